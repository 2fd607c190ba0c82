"""Settings parsing: bad values fail loudly, secrets come from a variable or a file."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from hub.env import env_bool, env_float, env_int, env_secret


def test_a_secret_comes_from_its_variable_then_its_file_then_a_fallback(tmp_path, monkeypatch):
    for name in ("MOECOLLAB_HF_TOKEN", "MOECOLLAB_HF_TOKEN_FILE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert env_secret("MOECOLLAB_HF_TOKEN", "HF_TOKEN") == ""
    monkeypatch.setenv("HF_TOKEN", "hf_fallback")
    assert env_secret("MOECOLLAB_HF_TOKEN", "HF_TOKEN") == "hf_fallback"
    secret = tmp_path / "token"
    secret.write_text("hf_from_file\n")
    monkeypatch.setenv("MOECOLLAB_HF_TOKEN_FILE", str(secret))
    assert env_secret("MOECOLLAB_HF_TOKEN", "HF_TOKEN") == "hf_from_file"
    monkeypatch.setenv("MOECOLLAB_HF_TOKEN", "hf_direct")
    assert env_secret("MOECOLLAB_HF_TOKEN", "HF_TOKEN") == "hf_direct"


def test_a_secret_file_that_cannot_be_read_stops_the_start(tmp_path, monkeypatch):
    monkeypatch.delenv("MOECOLLAB_HF_TOKEN", raising=False)
    monkeypatch.setenv("MOECOLLAB_HF_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="MOECOLLAB_HF_TOKEN_FILE="):
        env_secret("MOECOLLAB_HF_TOKEN")


@pytest.mark.parametrize(
    "parse, raw", [(env_bool, "maybe"), (env_int, "ten"), (env_float, "two seconds")]
)
def test_a_malformed_value_names_the_variable(parse, raw, monkeypatch):
    monkeypatch.setenv("SOME_SETTING", raw)
    with pytest.raises(ImproperlyConfigured, match=f"SOME_SETTING='{raw}'"):
        parse("SOME_SETTING", 1)


def test_the_storage_is_chosen_by_the_environment_and_refuses_what_it_cannot_use(monkeypatch):
    from hub.object_storage import default_storage

    for name in ("MOECOLLAB_STORAGE", "MOECOLLAB_S3_BUCKET", "MOECOLLAB_S3_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    assert default_storage()["BACKEND"].endswith("FileSystemStorage")
    monkeypatch.setenv("MOECOLLAB_STORAGE", "ftp")
    with pytest.raises(ImproperlyConfigured, match="'ftp' is not a storage"):
        default_storage()
    monkeypatch.setenv("MOECOLLAB_STORAGE", "S3")
    with pytest.raises(ImproperlyConfigured, match="needs MOECOLLAB_S3_BUCKET"):
        default_storage()
    monkeypatch.setenv("MOECOLLAB_S3_BUCKET", "models")
    monkeypatch.setenv("MOECOLLAB_S3_PREFIX", "/hub/")
    chosen = default_storage()
    assert chosen["BACKEND"] == "storages.backends.s3.S3Storage"
    assert chosen["OPTIONS"]["bucket_name"] == "models" and chosen["OPTIONS"]["location"] == "hub"
    assert (
        chosen["OPTIONS"]["querystring_auth"] is True and chosen["OPTIONS"]["default_acl"] is None
    )
