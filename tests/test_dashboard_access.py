"""Dashboard access over real HTTP: nothing without a login, the cookie, CSRF, logout, throttling, redirects."""

import httpx
import pytest
from sqlmodel import Session

from tally.store.accounts import hash_password, set_password
from tally.store.engine import writing
from tests.conftest import count_rows, wait_until
from tests.dashboard_support import EMAIL, PASSWORD, add_account, csrf_of, log_in, start_dashboard
from tests.payloads import openai_chat

PAGES = ["/dashboard", "/dashboard/models", "/dashboard/users", "/dashboard/users/1", "/dashboard/sessions",
         "/dashboard/sessions/1", "/dashboard/interactions", "/dashboard/interactions/1", "/dashboard/images/1"]


@pytest.fixture
def server(engine, settings, app_keys):
    add_account(engine)
    live = start_dashboard(settings)
    with httpx.Client(base_url=live.url) as http:
        assert http.post("/track", json=openai_chat(app_keys, user={"userId": "u1"})).status_code == 201
    yield live
    live.stop()


@pytest.fixture
def browser(server):
    with httpx.Client(base_url=server.url, follow_redirects=False) as http:
        yield http


def test_no_page_is_reachable_without_logging_in(browser):
    for path in PAGES + ["/dashboard?range=7d&model=gpt-4o"]:
        answer = browser.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next=%2Fdashboard"), path
        assert "tokens" not in answer.text.lower()
    assert browser.get("/").headers["location"] == "/dashboard"


def test_login_lands_on_the_page_asked_for_and_the_cookie_is_httponly_samesite(browser, engine):
    answer = log_in(browser, next="/dashboard/models?range=7d")
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard/models?range=7d"
    assert count_rows(engine, "dashboard_login") == 1  # committed before the answer, not after
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "tally_login=" in cookie
    page = browser.get("/dashboard/models?range=7d")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert wait_until(lambda: "gpt-4o-mini" in browser.get("/dashboard/models?range=7d").text)


def test_every_page_renders_after_login(browser, server):
    log_in(browser)
    assert wait_until(lambda: "u1" in browser.get("/dashboard/users").text)
    for path in PAGES[:-1]:
        assert browser.get(path).status_code == 200, path
    assert browser.get("/dashboard/users/999999").status_code == 404
    assert browser.get("/dashboard/sessions/999999").status_code == 404


def test_login_redirects_only_to_this_site(browser):
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        assert log_in(browser, next=target).headers["location"] == "/dashboard"


def test_wrong_password_unknown_email_and_missing_csrf_are_refused(browser):
    assert log_in(browser, password="wrong password").status_code == 401
    assert log_in(browser, email="nobody@example.com").status_code == 401
    form = browser.get("/login")
    refused = browser.post("/login", data={"email": EMAIL, "password": PASSWORD, "csrf": "forged"})
    assert refused.status_code == 403 and "login" not in refused.headers.get("set-cookie", "")
    cross_site = browser.post("/login", headers={"Origin": "https://evil.example"},
                              data={"email": EMAIL, "password": PASSWORD, "csrf": csrf_of(form.text)})
    assert cross_site.status_code == 403
    assert browser.get("/dashboard").status_code == 303


def test_a_tampered_cookie_is_a_stranger(browser, server):
    log_in(browser)
    value = browser.cookies["tally_login"]
    browser.cookies.set("tally_login", value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1])
    assert browser.get("/dashboard").status_code == 303


def test_logout_ends_the_login_on_the_server(browser, server):
    log_in(browser)
    stolen = browser.cookies["tally_login"]
    page = browser.get("/dashboard")
    assert browser.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 303
    with httpx.Client(base_url=server.url, cookies={"tally_login": stolen}) as replay:
        assert replay.get("/dashboard", follow_redirects=False).status_code == 303


def test_logout_needs_the_csrf_token(browser):
    log_in(browser)
    assert browser.post("/logout", data={"csrf": "nope"}).status_code == 403
    assert browser.get("/dashboard").status_code == 200


def test_a_new_password_logs_out_every_browser(browser, engine):
    log_in(browser)
    with Session(writing(engine)) as db:  # it reads, then writes beside a running server: see conftest.make_app
        set_password(db, email=EMAIL, password_hash=hash_password("another long password"))
        db.commit()
    assert browser.get("/dashboard").status_code == 303
    assert log_in(browser).status_code == 401
    assert log_in(browser, password="another long password").status_code == 303


def test_repeated_failures_are_throttled(browser):
    for _ in range(11):  # ten free attempts, and the one that goes over is still checked
        assert log_in(browser, password="guess").status_code == 401
    # The next try waits 1 s, then 2 s, 4 s… On a slow machine the 11th check may outlast the first pause, and the
    # try after it is checked (doubling the pause); a few tries in, one must be told to wait.
    statuses = [log_in(browser, password="guess").status_code for _ in range(3)]
    assert 429 in statuses, statuses
    answer = log_in(browser)  # the right password, at once: still waiting
    assert answer.status_code == 429 and "Too many attempts" in answer.text and answer.headers["Retry-After"]


def test_a_bad_filter_is_a_400_naming_it(browser):
    log_in(browser)
    for query, field in (("range=fortnight", "range"), ("range=custom&from=2024-13-01", "from"),
                         ("app=shop", "app"), ("cursor=garbage", "cursor")):
        answer = browser.get(f"/dashboard/users?{query}")
        assert answer.status_code == 400, query
        assert f"{field}:" in answer.text, query


def test_plotly_js_comes_from_this_server(browser):
    log_in(browser)
    page = browser.get("/dashboard").text
    scripts = [part.split('"')[1] for part in page.split("<script src=")[1:]]
    assert scripts and all(src.startswith("/dashboard/static/") for src in scripts)
    plotly = browser.get(next(src for src in scripts if "plotly" in src))
    assert plotly.status_code == 200 and len(plotly.content) > 1_000_000
    assert "immutable" in plotly.headers["cache-control"]
