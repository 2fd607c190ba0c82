"""A maintainer's domain data is split deterministically into router and eval data."""

import pytest

from devtools.tiny import synthetic_rows
from experts.services.domains import domain_data, import_domain_file
from routing.data import DatasetError


def test_domain_data_splits_by_text_and_replaces_old_files(
    mixture, media, django_capture_on_commit_callbacks
):
    domain = mixture.domains.get(name="weather")
    rows = synthetic_rows("weather", 200)
    csv = "text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows)
    import_domain_file(domain, csv.encode(), "weather.csv")
    first = {domain.router_data.name, domain.eval_data.name}
    data = domain_data(domain)
    assert domain.labels == ["rainy", "sunny"]
    assert len(data.router) + len(data.eval) == 200 == domain.router_count + domain.eval_count
    assert not set(data.router.texts) & set(data.eval.texts)
    with django_capture_on_commit_callbacks(execute=True):
        import_domain_file(domain, csv.encode(), "weather.csv")
    again = domain_data(domain)
    assert again.router.texts == data.router.texts  # the same split every time
    files = {p.name for p in (media / "domains").iterdir()}
    assert len(files) == 2 and not {n.split("/")[-1] for n in first} & files


def test_bad_domain_data_is_refused_and_keeps_the_old_data(mixture, media):
    domain = mixture.domains.get(name="weather")
    with pytest.raises(DatasetError, match="missing: label"):
        import_domain_file(domain, b"text,category\nx,y\n", "bad.csv")
    domain.refresh_from_db()
    assert domain.router_count == 0 and not domain.router_data
