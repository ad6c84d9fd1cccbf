"""The audit trail records who changed tokens, accounts, app keys and export schedules, and every dashboard
login, with when and from where; never a secret; nothing for a change that was refused."""

import json

import httpx
from sqlalchemy import text
from typer.testing import CliRunner

from tally.server.cli import app as cli
from tests.conftest import make_token
from tests.dashboard_support import EMAIL, PASSWORD, add_account, log_in

SCHEDULE = {"dataset": "users", "cron": "0 3 * * *", "timezone": "UTC"}


def _trail(tally_cli, *args: str) -> list[dict]:
    return json.loads(tally_cli("audit", "--json", *args))


def test_command_line_changes_are_recorded_without_secrets(tally_cli, engine):
    created = json.loads(tally_cli("apps", "create", "shop", "--json"))
    rotated = tally_cli("apps", "rotate-key", "shop").split()[1]
    tally_cli("apps", "revoke-key", "shop", created["api_key"][:12])
    token = tally_cli("tokens", "create", "nightly", "--scope", "export").strip()
    tally_cli("tokens", "revoke", "nightly")
    tally_cli("users", "create", "boss@example.com", "--role", "admin", "--password-stdin", stdin="a long passphrase\n")
    added = json.loads(tally_cli("exports", "schedule", "add", "users", "--cron", "0 4 * * *", "--json"))
    tally_cli("exports", "schedule", "remove", str(added["id"]))
    trail = _trail(tally_cli)
    assert [event["action"] for event in reversed(trail)] == [
        "app.create", "app.key_add", "app.key_revoke", "token.create", "token.revoke", "account.create",
        "schedule.add", "schedule.remove"]
    assert all(event["actor"].startswith("cli:") and event["address"] is None for event in trail)
    by_action = {event["action"]: event for event in trail}
    assert by_action["token.create"]["target"].startswith("nightly (tly_rt_")
    assert by_action["token.create"]["detail"] == {"scope": "export", "expires_in_days": None, "apps": None}
    assert by_action["account.create"]["target"] == "boss@example.com"
    assert by_action["schedule.add"]["detail"]["cron"] == "0 4 * * *"
    with engine.connect() as conn:  # the table itself, not only what the command prints
        stored = json.dumps([list(row) for row in conn.execute(text("SELECT * FROM audit_event"))])
    for secret in (created["api_key"], rotated, token, "a long passphrase"):
        assert secret not in stored
    assert len(_trail(tally_cli, "--limit", "2")) == 2
    assert _trail(tally_cli, "--since", "2999-01-01") == []
    assert "not a date" in CliRunner().invoke(cli, ["audit", "--since", "soon"]).output


def test_api_and_dashboard_changes_and_logins_name_who_and_where(tally_cli, engine, live_server):
    export_token = make_token(engine, "export")
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {export_token}"}) as api:
        schedule = api.post("/api/v1/exports/schedules", json=SCHEDULE).json()
        assert api.post("/api/v1/exports/schedules", json={**SCHEDULE, "cron": "0 0 31 2 *"}).status_code == 422
        assert api.delete(f"/api/v1/exports/schedules/{schedule['id']}").status_code == 204
    add_account(engine, role="admin")
    with httpx.Client(base_url=live_server.url) as browser:
        assert log_in(browser, password="wrong").status_code == 401
        assert log_in(browser, email="nobody@example.com").status_code == 401
        assert log_in(browser).status_code == 303
    trail = list(reversed(_trail(tally_cli)))
    assert [event["action"] for event in trail] == ["schedule.add", "schedule.remove", "login.failed",
                                                   "login.failed", "login"]  # the refused crontab left none
    assert trail[0]["actor"] == trail[1]["actor"] == "token:tests-export (" + export_token[:12] + "…)"
    assert all(event["address"] == "127.0.0.1" for event in trail)
    assert [event["actor"] for event in trail[2:]] == [f"login:{EMAIL}", "login:nobody@example.com",
                                                      f"account:{EMAIL}"]
    with engine.connect() as conn:
        stored = json.dumps([list(row) for row in conn.execute(text("SELECT * FROM audit_event"))])
    assert PASSWORD not in stored and "wrong" not in stored and export_token not in stored


def test_attempts_the_throttle_turns_away_are_not_recorded(tally_cli, engine, live_server):
    """Each failed password check is recorded; attempts refused by the throttle before any check are not, so that a
    flood of them cannot fill the trail."""
    add_account(engine)
    statuses = []
    with httpx.Client(base_url=live_server.url) as browser:
        while 429 not in statuses[-3:] and len(statuses) < 40:
            statuses.append(log_in(browser, password="guess").status_code)
        statuses += [log_in(browser, password="guess").status_code for _ in range(3)]
    assert 429 in statuses and set(statuses) == {401, 429}
    assert [event["action"] for event in _trail(tally_cli)] == ["login.failed"] * statuses.count(401)


def test_admins_read_the_trail_on_the_dashboard_and_nobody_else_does(engine, live_server):
    add_account(engine)  # an analyst
    add_account(engine, "root@example.com", "root password", role="admin")
    hostile = "<img src=x onerror=alert(1)>@example.com"
    with httpx.Client(base_url=live_server.url) as browser:
        assert log_in(browser, hostile, "guess").status_code == 401
        assert log_in(browser).status_code == 303
        assert browser.get("/dashboard/audit").status_code == 403
        assert 'href="/dashboard/audit"' not in browser.get("/dashboard").text
    with httpx.Client(base_url=live_server.url) as admin:
        assert log_in(admin, "root@example.com", "root password").status_code == 303
        assert 'href="/dashboard/audit"' in admin.get("/dashboard").text
        page = admin.get("/dashboard/audit")
        assert page.status_code == 200 and "account:root@example.com" in page.text and "login.failed" in page.text
        assert hostile not in page.text and "&lt;img src=x onerror=alert(1)&gt;@example.com" in page.text
