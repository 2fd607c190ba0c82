"""A real Chromium drives the site: register, log in, upload through the form, see the expert.

Screenshots of each page land in test-artifacts/browser/.
"""

import pytest

from experts.models import Expert
from tests.hub.conftest import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_register_log_in_upload_and_see_the_expert(live_server, page, mixture, expert_file, sent):
    url = live_server.url
    page.goto(f"{url}/")
    shot(page, "01-home")
    page.click("text=Sign up")
    page.fill("#id_username", "erin")
    page.fill("#id_email", "erin@example.org")
    page.fill("#id_password1", "a-long-passphrase-42")
    page.fill("#id_password2", "a-long-passphrase-42")
    shot(page, "02-register")
    page.click("button:has-text('Sign up')")
    page.wait_for_url(f"{url}/")
    assert "erin" in page.inner_text("header")

    page.click("form.inline button:has-text('Log out')")
    page.goto(f"{url}/accounts/login/")
    page.fill("#id_username", "erin")
    page.fill("#id_password", "a-long-passphrase-42")
    shot(page, "03-login")
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{url}/")

    page.goto(f"{url}/m/weather-food/")
    page.select_option("#id_domain", label="weather (rainy, sunny)")
    page.fill("#id_name", "chromium expert")
    page.set_input_files("#id_file", str(expert_file()))
    shot(page, "04-mixture-upload")
    page.click("#upload-form button:has-text('Upload')")
    page.wait_for_url(f"{url}/experts/*/")
    assert "chromium expert" in page.inner_text("h1")
    assert page.inner_text("#expert-status") == "uploaded"
    shot(page, "05-expert")
    expert = Expert.objects.get(name="chromium expert")
    assert expert.owner.username == "erin"

    page.goto(f"{url}/m/weather-food/")
    assert "chromium expert" in page.inner_text("#experts")
    shot(page, "06-mixture-with-expert")
    page.click("text=Leaderboard")
    page.wait_for_url(f"{url}/m/weather-food/leaderboard/")
    assert "weather" in page.inner_text("main")
    shot(page, "07-leaderboard")
