"""Per-app ingest limits over HTTP: beyond them a client gets 429 with Retry-After and nothing is stored; other
apps are untouched; on PostgreSQL the limit holds across replicas. And the writer serves apps in turn."""

import asyncio
import json
import time

import httpx
import pytest

from tally.ingest.writer import FairQueue
from tests.conftest import backend_of, count_rows, make_app, make_token, start_server
from tests.payloads import openai_chat


def _limited(tally_cli, app: str, *options: str) -> str:
    return tally_cli("apps", "set-limit", app, *options).strip()


def test_an_app_over_its_interaction_limit_gets_429_and_others_do_not(engine, settings, tally_cli):
    alpha, beta = make_app(engine, "alpha"), make_app(engine, "beta")
    assert _limited(tally_cli, "alpha", "--per-second", "5") == "alpha: 5 interactions/s"
    assert json.loads(tally_cli("apps", "list", "--json"))[0]["max_per_second"] == 5
    server = start_server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            # A batch larger than a second's worth passes an idle bucket whole, then the app must wait it out.
            batch = client.post("/track/batch", json=[openai_chat(alpha, text=f"q{i}") for i in range(10)])
            assert batch.status_code == 200 and batch.json()["stored"] == 10
            refused = client.post("/track", json=openai_chat(alpha))
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"] == "rate_limited" and refused.json()["errors"][0]["field"] == "(app)"
            assert "5 interactions a second" in refused.json()["message"]
            assert 1 <= int(refused.headers["retry-after"]) <= 3
            assert client.post("/track", json=openai_chat(beta)).status_code == 201  # another app: untouched
            whole = client.post("/track/batch", json=[openai_chat(alpha) for _ in range(3)])
            assert whole.status_code == 429 and "retry-after" in whole.headers  # all of it refused: retry it whole
            mixed = client.post("/track/batch", json=[openai_chat(alpha), openai_chat(beta)])
            assert [r["http_status"] for r in mixed.json()["results"]] == [429, 201]
            assert "retry-after" in mixed.headers
            assert count_rows(engine, "interaction") == 12  # nothing refused was stored
            time.sleep(int(refused.headers["retry-after"]) + 1.2)  # the bucket drains at 5 a second
            assert client.post("/track", json=openai_chat(alpha)).status_code == 201
    finally:
        server.stop()


def test_a_byte_limit_counts_request_bytes_and_the_defaults_apply_to_every_app(engine, settings, tally_cli):
    alpha = make_app(engine, "alpha")
    server = start_server(settings.model_copy(update={"app_max_bytes_per_second": 4000, "key_cache_seconds": 0.5}))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            big = openai_chat(alpha, text="x" * 2500)
            assert client.post("/track", json=big).status_code == 201
            refused = client.post("/track", json=openai_chat(alpha, text="y" * 2500))
            assert refused.status_code == 429 and "4000 bytes a second" in refused.json()["message"]
        assert _limited(tally_cli, "alpha", "--bytes-per-second", "0") == "alpha: no bytes limit"
        assert "0 bytes/s" in tally_cli("apps", "list")
        time.sleep(1)  # every server takes the new limit within TALLY_KEY_CACHE_SECONDS (0.5 here)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(3):
                assert client.post("/track", json=openai_chat(alpha, text="z" * 2500)).status_code == 201
    finally:
        server.stop()
    assert "must be 0 (no limit) or a positive number" in tally_cli("apps", "set-limit", "alpha", "--per-second",
                                                                   "-1", code=1)
    assert '"app.limits"' in tally_cli("audit", "--json")


def test_replicas_share_one_limit(engine, settings, tally_cli):
    """Two servers on one PostgreSQL database: together they admit what the limit allows, not twice that."""
    if backend_of(settings) == "sqlite":
        pytest.skip("one server serves a SQLite store: its limits live in its memory")
    alpha = make_app(engine, "alpha")
    _limited(tally_cli, "alpha", "--per-second", "10")
    replicas = [start_server(settings.model_copy(update={"data_dir": settings.data_dir / name, "replica": name,
                                                         "database_url": settings.database_url}))
                for name in ("a", "b")]
    try:
        clients = [httpx.Client(base_url=replica.url, timeout=30) for replica in replicas]
        started = time.monotonic()
        statuses = [clients[i % 2].post("/track", json=openai_chat(alpha, text=f"q{i}")).status_code
                    for i in range(40)]
        elapsed = time.monotonic() - started
        for client in clients:
            client.close()
    finally:
        for replica in replicas:
            replica.stop()
    admitted = statuses.count(201)
    assert set(statuses) == {201, 429}
    # A second's burst and what the elapsed time earned, with one request of slack for the clock: one replica
    # alone could admit as much, so two without a shared limit would admit about twice it.
    assert admitted <= 10 + 10 * elapsed + 1, (admitted, elapsed)
    assert count_rows(engine, "interaction") == admitted


def test_the_writer_takes_apps_in_turn():
    async def scenario() -> list:
        queue = FairQueue()
        for i in range(1000):
            queue.put(1, ("flood", i))
        queue.put(2, ("other", 0))
        first = await queue.take(8)
        rest = []
        while queue.qsize():
            rest += await queue.take(512)
        queue.done(len(first) + len(rest))
        await asyncio.wait_for(queue.join(), 1)
        return [first, rest]

    first, rest = asyncio.run(scenario())
    assert ("other", 0) in first[:2]  # the other app's write goes into the very next batch
    assert [item for item in first + rest if item[0] == "flood"] == [("flood", i) for i in range(1000)]  # in order


def test_an_admin_sets_limits_through_the_api(engine, live_server):
    alpha = make_app(engine, "alpha")
    with httpx.Client(base_url=live_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {make_token(engine, 'admin')}"}) as admin:
        set_ = admin.put("/api/v1/apps/alpha/limits", json={"per_second": 2})
        assert set_.status_code == 200 and set_.json()["max_per_second"] == 2, set_.text
        assert admin.get("/api/v1/apps").json()["apps"][0]["max_per_second"] == 2
        assert "key" not in str(admin.get("/api/v1/apps").json())
        assert admin.put("/api/v1/apps/alpha/limits", json={"per_second": -1}).status_code == 422
        assert admin.put("/api/v1/apps/nope/limits", json={}).status_code == 404
        statuses = [admin.post("/track", json=openai_chat(alpha)).status_code for _ in range(4)]
        assert statuses[:2] == [201, 201] and 429 in statuses
    with httpx.Client(base_url=live_server.url, timeout=30,
                      headers={"Authorization": f"Bearer {make_token(engine, 'export')}"}) as exporter:
        assert exporter.put("/api/v1/apps/alpha/limits", json={}).status_code == 403
