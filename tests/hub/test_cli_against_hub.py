"""A contributor checks an expert against a hub's domain before uploading it: the CLI
reads the base model and the labels from the hub's API."""

import pytest

from routing.cli import main

pytestmark = [pytest.mark.django_db(transaction=True)]


def test_check_reads_the_domain_from_the_hub(live_server, mixture, expert_file, capsys):
    hub = ["--hub", live_server.url, "--mixture", "weather-food", "--device", "cpu"]
    assert main(["check", str(expert_file()), *hub, "--domain", "weather"]) == 0
    assert "OK: head expert" in capsys.readouterr().out
    assert main(["check", str(expert_file()), *hub, "--domain", "food"]) == 1
    assert "REJECTED (wrong_labels)" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="has no domain 'sport'"):
        main(["check", str(expert_file()), *hub, "--domain", "sport"])
