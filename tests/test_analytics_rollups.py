"""Rollups equal a brute-force recomputation, however the data arrived; incremental equals a rebuild."""

import itertools

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text

from tally.analytics.prices import load_prices
from tally.analytics.service import Analytics, rebuild
from tally.ingest.batch import store_batch
from tally.ingest.keys import VerifiedApp
from tally.ingest.prepare import prepare
from tally.ingest.wire import TrackPayload
from tally.store.secrets import now_ms
from tests.analytics_brute import day_rollup, session_rollup
from tests.conftest import make_app

HOUR = 3_600_000
BASE = 1_717_000_000_000  # 2024-05-29
MODELS = ["gpt-4o-mini-2024-07-18", "gpt-4o", "claude-3-haiku-20240307", "house-model-x"]
_names = itertools.count()

interaction = st.fixed_dictionaries({
    "at": st.integers(BASE, BASE + 72 * HOUR),
    "model": st.sampled_from(MODELS),
    "user": st.sampled_from(["a", "b", "c", None]),
    "usage": st.sampled_from(["reported", "estimated"]),
    "error": st.booleans(),
    "latency": st.one_of(st.none(), st.integers(0, 20_000)),  # None: no response time, an unknown latency
    "tokens": st.integers(0, 5_000),
})


def _payload(keys, spec) -> dict:
    provider = "anthropic" if spec["model"].startswith("claude") else "openai"
    request = {"model": spec["model"], "messages": [{"role": "user", "content": "q" * (spec["tokens"] % 97)}]}
    if provider == "anthropic":
        response = {"id": None, "model": spec["model"], "content": [{"type": "text", "text": "a" * 40}],
                    "stop_reason": "end_turn"}
        if spec["usage"] == "reported":
            response["usage"] = {"input_tokens": spec["tokens"], "output_tokens": spec["tokens"] // 3,
                                 "cache_read_input_tokens": spec["tokens"] // 5}
    else:
        response = {"model": spec["model"], "choices": [{"message": {"content": "a" * 40}, "finish_reason": "stop"}]}
        if spec["usage"] == "reported":
            response["usage"] = {"prompt_tokens": spec["tokens"], "completion_tokens": spec["tokens"] // 3,
                                 "prompt_tokens_details": {"cached_tokens": spec["tokens"] // 4}}
    if spec["error"]:
        response["error"] = {"message": "rate limited"}
    return {"reconify": {"format": provider, "type": "chat", "appKey": keys.app_key, "apiKey": keys.api_key},
            "request": request, "response": response, "user": {"userId": spec["user"]} if spec["user"] else {},
            "timestamps": {"request": spec["at"]} if spec["latency"] is None else {
                "request": spec["at"], "response": spec["at"] + spec["latency"]}}


def _store(engine, keys, app_id, specs):
    jobs = [prepare(TrackPayload.model_validate(_payload(keys, spec)), app=VerifiedApp(app_id, None),
                    received_at=now_ms(), default_timeout_minutes=30) for spec in specs]
    with engine.begin() as conn:
        store_batch(conn, jobs)


def _duck_days(analytics, app_id) -> dict:
    rows = analytics.warehouse.cursor().execute(
        "SELECT bucket, provider, model, interactions, errors, reported_prompt_tokens, reported_completion_tokens, "
        "estimated_prompt_tokens, estimated_completion_tokens, absent_usage, round(cost, 9)::DOUBLE, priced, unpriced, "
        "round(latency_p50, 6), round(latency_p95, 6) FROM rollup_day WHERE app_id = ?", [app_id]).fetchall()
    names = ["interactions", "errors", "reported_prompt_tokens", "reported_completion_tokens",
             "estimated_prompt_tokens", "estimated_completion_tokens", "absent_usage", "cost", "priced", "unpriced",
             "latency_p50", "latency_p95"]
    return {(r[0], r[1], r[2]): dict(zip(names, r[3:])) for r in rows}


def _differences(actual: dict, expected: dict) -> list:
    """(key, field, actual, expected) for every value that differs, so a failure names what is wrong."""
    found = [(key, "(bucket)", key in actual, key in expected) for key in actual.keys() ^ expected.keys()]
    for key in actual.keys() & expected.keys():
        found += [(key, name, actual[key][name], value) for name, value in expected[key].items()
                  if actual[key][name] != value]
    return found


def _duck_sessions(analytics, app_id) -> dict:
    rows = analytics.warehouse.cursor().execute(
        "SELECT session_id, turns, started_at, ended_at FROM session_stats WHERE app_id = ?", [app_id]).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


@hypothesis_settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(st.lists(interaction, min_size=1, max_size=12), min_size=1, max_size=4))
def test_incremental_rollups_equal_brute_force_and_rebuild(engine, settings, chunks):
    keys = make_app(engine, name=f"rollups-{next(_names)}")
    with engine.connect() as conn:
        app_id = conn.execute(text("SELECT id FROM app WHERE app_key = :k"), {"k": keys.app_key}).scalar_one()
    zoned = settings.model_copy(update={"analytics_timezone": "Asia/Kolkata"})
    analytics = Analytics(zoned)
    try:
        for chunk in chunks:  # refresh between chunks: later chunks land in buckets that already exist
            _store(engine, keys, app_id, chunk)
            analytics.refresh()
        expected = day_rollup(engine, app_id, "Asia/Kolkata", load_prices())
        assert _differences(_duck_days(analytics, app_id), expected) == []
        assert _duck_sessions(analytics, app_id) == session_rollup(engine, app_id)
    finally:
        analytics.close()
    rebuild(zoned)
    rebuilt = Analytics(zoned)
    try:
        assert _differences(_duck_days(rebuilt, app_id), expected) == []
        assert _duck_sessions(rebuilt, app_id) == session_rollup(engine, app_id)
    finally:
        rebuilt.close()
