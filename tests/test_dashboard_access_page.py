"""The dashboard's Access page: an admin manages accounts and tokens there (each change audited, the limits in force
at once); no one else may open it or post to it. Over HTTP, and in a real browser (Debian's Chromium)."""

import os
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_app, wait_until
from tests.dashboard_support import CHROMIUM, CHROMIUM_ARGS, add_account, csrf_of, log_in, start_dashboard
from tests.payloads import openai_chat

ADMIN, PASSWORD = "boss@example.com", "a long passphrase"
ARTIFACTS = Path(__file__).parents[1] / "test-artifacts" / "dashboard"


@pytest.fixture
def server(engine, settings):
    alpha, beta = make_app(engine, "alpha"), make_app(engine, "beta")
    add_account(engine, ADMIN, PASSWORD, role="admin")
    live = start_dashboard(settings)
    with httpx.Client(base_url=live.url) as http:
        for keys in (alpha, beta):
            posted = http.post("/track", json=openai_chat(keys, text=f"{keys.name} question", model=f"{keys.name}-m"))
            assert posted.status_code == 201
    yield live
    live.stop()


def _browser(server) -> httpx.Client:
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)


def test_only_an_admin_opens_or_posts_to_the_access_page(server, engine):
    for role in ("viewer", "analyst"):
        add_account(engine, f"{role}@example.com", PASSWORD, role=role)
        with _browser(server) as browser:
            log_in(browser, f"{role}@example.com", PASSWORD)
            page = browser.get("/dashboard")
            assert page.status_code == 200 and "/dashboard/access" not in page.text
            assert browser.get("/dashboard/access").status_code == 403
            posted = browser.post("/dashboard/access/tokens", data={"csrf": csrf_of(page.text), "name": "mine"})
            assert posted.status_code == 403 and "tly_rt_" not in posted.text
    with _browser(server) as admin:
        log_in(admin, ADMIN, PASSWORD)
        page = admin.get("/dashboard/access")
        assert page.status_code == 200 and "viewer@example.com" in page.text
        assert admin.post("/dashboard/access/tokens", data={"name": "no-csrf"}).status_code == 403
        refused = admin.post("/dashboard/access/accounts/change",
                             data={"csrf": csrf_of(page.text), "email": ADMIN, "action": "save", "role": "viewer"})
        assert refused.status_code == 422 and "your own account" in refused.text
        for expires in ("nan", "-1", "1e400"):
            bad = admin.post("/dashboard/access/tokens", data={"csrf": csrf_of(page.text), "name": "x",
                                                               "expires_in": expires})
            assert bad.status_code == 422 and "expires_in" in bad.text, expires
        lost = admin.post("/dashboard/access/accounts", data={"csrf": csrf_of(page.text), "email": "x@example.com",
                                                               "password": PASSWORD, "app": "gamma"})
        assert lost.status_code == 422 and "no app is named" in lost.text
        assert "x@example.com" not in admin.get("/dashboard/access").text


def test_an_admin_sets_up_a_one_app_analyst_and_token_in_the_browser(server, tally_cli):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            admin = chromium.new_context(base_url=server.url).new_page()
            _log_in(admin, ADMIN)
            admin.click("nav >> text=Access")
            add = admin.locator("form[action='/dashboard/access/accounts']")
            add.locator("input[name=email]").fill("ana@example.com")
            add.locator("input[name=password]").fill(PASSWORD)
            add.locator("select[name=role]").select_option("analyst")
            add.locator("input[name=app][value=alpha]").check()
            add.locator("button[type=submit]").click()
            row = admin.locator("tr", has_text="ana@example.com")
            assert "alpha" in row.inner_text() and row.locator("select[name=role]").input_value() == "analyst"
            make = admin.locator("form[action='/dashboard/access/tokens']")
            make.locator("input[name=name]").fill("alpha-csv")
            make.locator("input[name=app][value=alpha]").check()
            make.locator("button[type=submit]").click()
            token = admin.locator("#new-token").inner_text().strip()
            assert token.startswith("tly_rt_")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            admin.screenshot(path=ARTIFACTS / "access.png", full_page=True)

            analyst = chromium.new_context(base_url=server.url).new_page()
            _log_in(analyst, "ana@example.com")
            assert analyst.locator("nav >> text=Access").count() == 0
            def shows_alpha() -> bool:
                analyst.goto("/dashboard/interactions")
                return "alpha question" in analyst.content()
            assert wait_until(shows_alpha)
            assert "beta" not in analyst.content()
            assert [o.strip() for o in analyst.locator("select[name=app] option").all_inner_texts()] == [
                "All apps", "alpha"]
            assert analyst.goto("/dashboard/access").status == 403
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as api:
                csv = api.get("/api/v1/exports/interactions.csv").text
                assert "alpha question" in csv and "beta" not in csv

            admin.goto("/dashboard/access")
            admin.locator("tr", has_text="ana@example.com").locator("button[value=disable]").click()
            assert "disabled" in admin.locator("tr", has_text="ana@example.com").inner_text()
            analyst.goto("/dashboard")
            assert "/login" in analyst.url  # logged out at once
            admin.locator("tr", has_text="alpha-csv").locator("button", has_text="Revoke").click()
            assert "revoked" in admin.locator("tr", has_text="alpha-csv").inner_text()
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as api:
                assert api.get("/api/v1/usage/totals").status_code == 401
        finally:
            chromium.close()
    trail = tally_cli("audit", "--json")
    for action in ("account.create", "token.create", "account.disable", "token.revoke"):
        assert f'"{action}"' in trail and "account:boss@example.com" in trail
    assert token not in trail


def _log_in(page, email: str) -> None:
    page.goto("/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.login button[type=submit]")
    page.wait_for_url("**/dashboard**")
