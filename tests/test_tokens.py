"""API tokens have a scope (read < export < admin), may expire, can be listed and revoked, and record their last
use; each rule seen from both sides over HTTP, with tokens made by the real `tally tokens` command."""

import json

import httpx
from sqlalchemy import text

from tally.server import migrations
from tally.store.engine import build_engine
from tally.store.secrets import hash_secret, now_ms
from tests.conftest import make_token, wait_until

SCHEDULE = {"dataset": "users", "cron": "0 3 * * *", "timezone": "UTC"}


def _client(server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_each_scope_does_what_it_allows_and_no_more(tally_cli, live_server):
    tokens = {scope: tally_cli("tokens", "create", f"ci-{scope}", "--scope", scope).strip()
              for scope in ("read", "export", "admin")}
    assert all(token.startswith("tly_rt_") and "\n" not in token for token in tokens.values())
    for scope, token in tokens.items():
        with _client(live_server, token) as api:
            assert api.get("/api/v1/usage/totals").status_code == 200, scope
            assert api.get("/api/v1/exports/users.csv").status_code == 200, scope
            assert api.get("/api/v1/exports/schedules").status_code == 200, scope
            created = api.post("/api/v1/exports/schedules", json=SCHEDULE)
            if scope == "read":
                assert created.status_code == 403, created.text
                assert created.json()["error"] == "forbidden" and "needs 'export'" in created.json()["message"]
            else:
                assert created.status_code == 201, created.text
                assert api.delete(f"/api/v1/exports/schedules/{created.json()['id']}").status_code == 204


def test_a_read_token_cannot_remove_a_schedule(live_server, engine):
    with _client(live_server, make_token(engine, "export")) as exporter:
        schedule = exporter.post("/api/v1/exports/schedules", json=SCHEDULE).json()
    with _client(live_server, make_token(engine, "read")) as reader:
        assert reader.delete(f"/api/v1/exports/schedules/{schedule['id']}").status_code == 403
        assert reader.get(f"/api/v1/exports/schedules/{schedule['id']}").status_code == 200


def test_an_expired_or_revoked_token_opens_nothing(tally_cli, live_server, engine):
    expiring = make_token(engine, expires_in_days=1)
    with _client(live_server, expiring) as api:
        assert api.get("/api/v1/usage/totals").status_code == 200
    with engine.begin() as conn:  # a day later
        conn.execute(text("UPDATE read_token SET expires_at = :t WHERE token_hash = :h"),
                     {"t": now_ms() - 1, "h": hash_secret(expiring)})
    with _client(live_server, expiring) as api:
        refused = api.get("/api/v1/usage/totals")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    kept = tally_cli("tokens", "create", "kept").strip()
    gone = tally_cli("tokens", "create", "leaving").strip()
    assert tally_cli("tokens", "revoke", "leaving").strip() == "revoked 1 token"
    with _client(live_server, gone) as api:
        assert api.get("/api/v1/usage/totals").status_code == 401
    with _client(live_server, kept) as api:
        assert api.get("/api/v1/usage/totals").status_code == 200
    assert "no live token" in tally_cli("tokens", "revoke", "leaving", code=1)


def test_tokens_are_listed_without_their_secrets_and_revoked_by_prefix(tally_cli, live_server):
    secret = tally_cli("tokens", "create", "nightly-csv", "--scope", "export", "--expires-in", "30").strip()
    tally_cli("tokens", "create", "dashboard-bot")
    with _client(live_server, secret) as api:
        assert api.get("/api/v1/usage/totals").status_code == 200
    listed = {token["name"]: token for token in json.loads(tally_cli("tokens", "list", "--json"))}
    nightly = listed["nightly-csv"]
    assert nightly["scope"] == "export" and secret.startswith(nightly["prefix"]) and secret not in json.dumps(listed)
    assert 29 * 86_400_000 < nightly["expires_at"] - nightly["created_at"] <= 30 * 86_400_000
    assert listed["dashboard-bot"]["scope"] == "read" and listed["dashboard-bot"]["expires_at"] is None
    assert wait_until(lambda: json.loads(tally_cli("tokens", "list", "--json"))[0]["last_used_at"] is not None)
    assert listed["dashboard-bot"]["last_used_at"] is None
    table = tally_cli("tokens", "list")
    assert "nightly-csv" in table and "export" in table and secret not in table
    assert tally_cli("tokens", "revoke", nightly["prefix"]).strip() == "revoked 1 token"
    assert json.loads(tally_cli("tokens", "list", "--json"))[0]["revoked_at"] is not None
    assert "unknown scope 'owner'" in tally_cli("tokens", "create", "x", "--scope", "owner", code=2)
    assert "above 0" in tally_cli("tokens", "create", "x", "--expires-in", "0", code=1)


def test_tokens_made_before_scopes_keep_working_as_read_tokens(settings):
    """The migration gives every existing token the `read` scope: it reads as before, but may no longer change
    export schedules."""
    migrations.upgrade(settings, "2026_12_01_replicas")
    engine = build_engine(settings)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO read_token (name, prefix, token_hash, created_at) "
                              "VALUES ('old', 'tly_rt_old', :h, 1)"), {"h": hash_secret("tly_rt_old-secret")})
        migrations.upgrade(settings)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT scope, expires_at FROM read_token")).one() == ("read", None)
    finally:
        engine.dispose()
