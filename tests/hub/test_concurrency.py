"""Twenty uploads at once by one user against a quota of ten, on both databases."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from devtools.experts import make_head_file
from experts.models import Expert
from tests.hub.conftest import LABELS
from tests.hub.processes import WebServer, upload_over_http

pytestmark = [pytest.mark.django_db(transaction=True)]
RACERS = 20
QUOTA = 10


def race(url, token, files):
    """POST every file at the same moment; the status codes, sorted."""

    def post(path):
        status, body = upload_over_http(url, token, path)
        if status not in (201, 403):
            print(f"unexpected answer {status}: {body[:300]!r}")
        return status

    with ThreadPoolExecutor(len(files)) as pool:
        return sorted(pool.map(post, files))


@pytest.fixture
def twenty_files(tmp_path, tiny_encoder):
    return [
        make_head_file(tmp_path / f"e{i}.safetensors", tiny_encoder, LABELS, "weather", seed=i)
        for i in range(RACERS)
    ]


def test_the_quota_holds_under_twenty_concurrent_uploads_on_postgresql(
    live_server, alice, mixture, twenty_files, media, sent
):
    from rest_framework.authtoken.models import Token

    assert mixture.upload_quota == QUOTA
    codes = race(live_server.url, Token.objects.create(user=alice).key, twenty_files)
    print(f"PostgreSQL, {RACERS} concurrent uploads, quota {QUOTA}: {codes}")
    assert codes == [201] * QUOTA + [403] * (RACERS - QUOTA)
    assert Expert.objects.filter(owner=alice).count() == QUOTA
    assert len(list((media / "experts").glob("*"))) == QUOTA  # refused files were removed


SETUP = """
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from experts.models import BaseModel, Domain, Mixture
u = User.objects.create_user("alice", "alice@example.org", "pw")
b = BaseModel.objects.create(name={name!r}, hidden_size={hidden}, num_layers={layers},
                             intermediate_size={inter})
m = Mixture.objects.create(slug="weather-food", name="W", base_model=b, upload_quota={quota})
Domain.objects.create(mixture=m, name="weather", labels={labels!r})
print(Token.objects.create(user=u).key)
"""


def test_the_quota_holds_under_twenty_concurrent_uploads_on_sqlite(
    tmp_path, media, tiny_encoder, twenty_files
):
    web = WebServer(tmp_path, media, DATABASE_URL=None, REDIS_URL=None)  # the embedded default
    web.manage("migrate", "--noinput")
    spec = tiny_encoder.spec
    token = web.manage(
        "shell",
        "-c",
        SETUP.format(
            name=spec.name,
            hidden=spec.hidden_size,
            layers=spec.num_layers,
            inter=spec.intermediate_size,
            quota=QUOTA,
            labels=LABELS,
        ),
    ).split()[-1]
    web.start()
    try:
        codes = race(web.url, token, twenty_files)
    finally:
        web.stop()
    print(f"SQLite, {RACERS} concurrent uploads, quota {QUOTA}: {codes}")
    assert codes == [201] * QUOTA + [403] * (RACERS - QUOTA)
    assert len(list((media / "experts").glob("*"))) == QUOTA
