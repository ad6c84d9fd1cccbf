"""Dashboard roles (viewer < analyst < admin) and the account commands: list, set-role, disable, enable, delete;
each seen from the browser's side over HTTP, and in the audit trail."""

import json

import httpx
from sqlalchemy import text

from tally.server import migrations
from tally.store.engine import build_engine
from tests.dashboard_support import log_in

PASSWORD = "a long passphrase"


def _create(tally_cli, email: str, *role: str) -> None:
    tally_cli("users", "create", email, *role, "--password-stdin", stdin=f"{PASSWORD}\n")


def test_a_role_change_applies_at_the_next_page_and_disabling_logs_out(tally_cli, live_server):
    _create(tally_cli, "vera@example.com")  # a viewer by default
    _create(tally_cli, "boss@example.com", "--role", "admin")
    listed = json.loads(tally_cli("users", "list", "--json"))
    assert [(row["email"], row["role"], row["disabled_at"]) for row in listed] == [
        ("boss@example.com", "admin", None), ("vera@example.com", "viewer", None)]
    with httpx.Client(base_url=live_server.url) as browser:
        assert log_in(browser, "vera@example.com", PASSWORD).status_code == 303
        assert browser.get("/dashboard/exports/users.csv").status_code == 403
        changed = tally_cli("users", "set-role", "Vera@Example.com", "analyst")
        assert changed.strip() == "vera@example.com is now analyst of every app"
        assert browser.get("/dashboard/exports/users.csv").status_code == 200  # the same login, the new role
        tally_cli("users", "disable", "vera@example.com")
        assert browser.get("/dashboard", follow_redirects=False).status_code == 303  # logged out
        assert log_in(browser, "vera@example.com", PASSWORD).status_code == 401
        tally_cli("users", "enable", "vera@example.com")
        assert log_in(browser, "vera@example.com", PASSWORD).status_code == 303
        tally_cli("users", "delete", "vera@example.com")
        assert browser.get("/dashboard", follow_redirects=False).status_code == 303
        assert log_in(browser, "vera@example.com", PASSWORD).status_code == 401
    assert "unknown role 'owner'" in tally_cli("users", "set-role", "boss@example.com", "owner", code=1)
    assert "no account for nobody@example.com" in tally_cli("users", "disable", "nobody@example.com", code=1)
    assert [row["email"] for row in json.loads(tally_cli("users", "list", "--json"))] == ["boss@example.com"]
    trail = [(event["action"], event["target"]) for event in reversed(json.loads(tally_cli("audit", "--json")))]
    assert [entry for entry in trail if entry[0].startswith("account.")] == [
        ("account.create", "vera@example.com"), ("account.create", "boss@example.com"),
        ("account.role", "vera@example.com"), ("account.disable", "vera@example.com"),
        ("account.enable", "vera@example.com"), ("account.delete", "vera@example.com")]


def test_admins_stay_admins_and_other_accounts_become_viewers(settings):
    migrations.upgrade(settings, "2026_12_01_replicas")
    engine = build_engine(settings)
    try:
        with engine.begin() as conn:
            for email, admin in (("a@example.com", True), ("v@example.com", False)):
                conn.execute(text("INSERT INTO dashboard_account (email, password_hash, is_admin, created_at, "
                                  "password_changed_at) VALUES (:e, 'x', :a, 1, 1)"), {"e": email, "a": admin})
        migrations.upgrade(settings)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT email, role, disabled_at FROM dashboard_account ORDER BY email")).all() \
                == [("a@example.com", "admin", None), ("v@example.com", "viewer", None)]
    finally:
        engine.dispose()
