"""The `tally` command manages apps, keys and tokens, and the keys it prints work against a live server."""

import json

import pytest
from typer.testing import CliRunner

from tally.server.cli import app as cli
from tests.conftest import AppKeys, start_server
from tests.payloads import openai_chat


@pytest.fixture
def run(settings, monkeypatch):
    monkeypatch.setenv("TALLY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TALLY_DATABASE_URL", settings.database_url)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, list(args))
        assert result.exit_code == code, result.output
        return result.stdout
    return invoke


def test_apps_keys_and_tokens_round_trip(run, settings):
    created = json.loads(run("apps", "create", "shop", "--session-timeout", "30", "--json"))
    assert created["app"] == "shop" and created["api_key"].startswith("tk_")
    listed = json.loads(run("apps", "list", "--json"))
    assert listed == [{"app": "shop", "app_key": created["app_key"], "session_timeout_minutes": 30.0,
                       "api_keys": [created["api_key"][:12]], "max_per_second": None,
                       "max_bytes_per_second": None, "redaction": None, "raw_retention_days": None,
                       "upload_retention_days": None}]
    rotated = run("apps", "rotate-key", "shop").split()[1]
    token = run("tokens", "create", "analyst").strip()
    assert token.startswith("tly_rt_") and "\n" not in token

    server = start_server(settings.model_copy(update={"key_cache_seconds": 0}))
    try:
        import httpx

        with httpx.Client(base_url=server.url) as http:
            old = AppKeys("shop", created["app_key"], created["api_key"])
            new = AppKeys("shop", created["app_key"], rotated)
            assert http.post("/track", json=openai_chat(old)).status_code == 201
            assert http.post("/track", json=openai_chat(new)).status_code == 201
            run("apps", "revoke-key", "shop", created["api_key"][:12])
            assert http.post("/track", json=openai_chat(old)).status_code == 401
            assert http.post("/track", json=openai_chat(new)).status_code == 201
            assert http.get("/api/v1/users/1", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        server.stop()


def test_app_errors_are_reported_not_raised(run):
    run("apps", "create", "dup")
    assert "already exists" in CliRunner().invoke(cli, ["apps", "create", "dup"]).output
    run("apps", "rotate-key", "nope", code=1)
    only_key = json.loads(run("apps", "list", "--json"))[0]["api_keys"][0]
    run("apps", "revoke-key", "dup", only_key, code=1)


def test_db_upgrade(run):
    assert "up to date" in run("db", "upgrade")


def test_demo_then_analytics_refresh_and_rebuild_agree(run, settings):
    import duckdb

    assert "stored 400 demo interactions" in run("demo", "--interactions", "400", "--days", "7")
    assert "refreshed: 400 interactions" in run("analytics", "refresh")
    tables = ("rollup_hour", "rollup_day", "user_day", "session_stats")

    def snapshot():
        with duckdb.connect(str(settings.analytics_path), read_only=True) as db:
            return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}

    incremental = snapshot()
    assert sum(row[4] for row in incremental["rollup_day"]) == 400  # the interactions column
    assert "rebuilt: 400 interactions" in run("analytics", "rebuild")
    assert snapshot() == incremental
    providers = {row[2] for row in incremental["rollup_day"]}
    assert providers == {"openai", "anthropic", "bedrock", "cohere", "mistral", "universal"}




def test_a_sqlite_store_refuses_several_workers(tmp_path, monkeypatch):
    """Several worker processes share a PostgreSQL store (the replicas traffic test runs them); a SQLite store has
    one server process, so `--workers 2` (or TALLY_WORKERS=2) is refused before anything starts, migrations too."""
    monkeypatch.setenv("TALLY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TALLY_DATABASE_URL", raising=False)
    for args, env in ((["serve", "--workers", "2"], {}), (["serve"], {"TALLY_WORKERS": "2"})):
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 1 and "a SQLite store has one server process" in result.output, result.output
    assert not (tmp_path / "data").exists()
    assert CliRunner().invoke(cli, ["serve", "--workers", "0"]).exit_code == 2
