"""A stored row with values outside Tally's bounds is left out of the analytics, counted and logged once, and
never stops a refresh; the largest values ingest accepts are costed without overflow."""

import logging

import httpx
import pytest
from sqlalchemy import inspect

from tally.analytics.prices import PriceFileError, load_prices
from tally.analytics.service import Analytics
from tally.store.limits import MAX_EPOCH_MS, MAX_PRICE_PER_UNIT, MAX_TOKENS
from tests.analytics_store import BASE, app_id_of, change, store
from tests.conftest import make_app, start_server, wait_until
from tests.payloads import openai_chat

PRICES = "provider,model,input_per_mtok,cached_input_per_mtok,output_per_mtok,per_image,effective_from\n"


@pytest.fixture
def fast(settings, engine):
    """A live server refreshing every 0.2 s, and a read client for it."""
    from sqlmodel import Session

    from tally.store.read_tokens import create_read_token

    with Session(engine) as db:
        token = create_read_token(db, name="quarantine")
        db.commit()
    server = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2}))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        yield http
    server.stop()


def _shown(http, app_id: int) -> list[int]:
    answer = http.get("/api/v1/interactions", params={"from": "2024-05-01", "app": app_id, "limit": 500})
    return sorted(item["id"] for item in answer.json()["items"])


def _left_out(caplog, interaction_id: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and f"interaction {interaction_id} is left out" in r.getMessage()]


def test_a_bad_row_is_left_out_and_every_app_keeps_flowing(fast, engine, settings, caplog):
    caplog.set_level(logging.WARNING, logger="tally.analytics")
    shop, bot = make_app(engine, "shop"), make_app(engine, "bot")
    shop_id, bot_id = app_id_of(engine, shop), app_id_of(engine, bot)
    negative, distant, fine = store(engine, shop, 3)
    first_bot = store(engine, bot)
    assert wait_until(lambda: _shown(fast, shop_id) == [negative, distant, fine])
    change(engine, negative, prompt_tokens=-5)
    change(engine, distant, request_at=MAX_EPOCH_MS + 1)
    bad = [negative, distant]
    if settings.database_url.startswith("sqlite"):  # any value fits any column: the issue's own case, and worse
        huge, real, word = store(engine, shop, 3, at_ms=BASE + 60_000)
        change(engine, huge, prompt_tokens=10**15)
        change(engine, real, latency_ms=1e300)
        change(engine, word, completion_tokens="lots")
        bad += [huge, real, word]
    later_bot = store(engine, bot, at_ms=BASE + 120_000)
    assert wait_until(lambda: _shown(fast, bot_id) == first_bot + later_bot)
    assert wait_until(lambda: fast.get("/api/v1/analytics/status").json()["quarantined"] == len(bad))
    assert _shown(fast, shop_id) == [fine]
    assert fast.get("/api/v1/usage/totals", params={"from": "2024-05-01", "app": shop_id}).json()[
        "interactions"] == 1
    reasons = {i: _left_out(caplog, i) for i in bad}
    assert "prompt_tokens -5 is outside [0, 1000000000]" in reasons[negative][0]
    assert f"request_at {MAX_EPOCH_MS + 1} is outside" in reasons[distant][0]
    if len(bad) > 2:
        assert "prompt_tokens 1000000000000000 is outside" in reasons[bad[2]][0]
        assert "latency_ms 1e+300 is not an integer" in reasons[bad[3]][0]
        assert "completion_tokens lots is not an integer" in reasons[bad[4]][0]
    store(engine, bot, at_ms=BASE + 180_000)  # more refreshes go by: each bad row is still logged once
    assert wait_until(lambda: len(_shown(fast, bot_id)) == 3)
    assert all(len(_left_out(caplog, i)) == 1 for i in bad), reasons

    change(engine, negative, prompt_tokens=21)  # fixed in the store: it comes back
    assert wait_until(lambda: _shown(fast, shop_id) == [negative, fine])
    assert fast.get("/api/v1/analytics/status").json()["quarantined"] == len(bad) - 1


def test_a_row_that_turns_bad_leaves_the_rollups(engine, settings, app_keys):
    first, second = store(engine, app_keys, 2)
    analytics = Analytics(settings)
    try:
        analytics.refresh()
        change(engine, second, completion_tokens=-1)
        analytics.refresh()
        cursor = analytics.warehouse.cursor()
        assert cursor.execute("SELECT sum(interactions) FROM rollup_day").fetchall() == [(1,)]
        assert cursor.execute("SELECT id, reason FROM quarantine").fetchall() == [
            (second, "completion_tokens -1 is outside [0, 1000000000]")]
    finally:
        analytics.close()


def test_the_largest_values_ingest_accepts_are_costed(engine, settings, app_keys, read_token, tmp_path):
    """The most expensive price a price file may hold, on the largest token counts: no overflow, exact."""
    prices = tmp_path / "prices.csv"
    top = f"{MAX_PRICE_PER_UNIT:.0f}"
    prices.write_text(PRICES + f"openai,gpt-4o-mini,{top},{top},{top},{top},2024-01-01\n")
    server = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2, "prices_file": prices}))
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {read_token}"}) as http:
            payload = openai_chat(app_keys, at_ms=BASE)
            payload["response"]["usage"] = {"prompt_tokens": MAX_TOKENS, "completion_tokens": MAX_TOKENS,
                                            "total_tokens": 2 * MAX_TOKENS}
            assert http.post("/track", json=payload).status_code == 201
            def totals():
                return http.get("/api/v1/usage/totals", params={"from": "2024-05-01"}).json()
            assert wait_until(lambda: totals()["interactions"] == 1)
            assert totals()["cost"] == 2 * MAX_TOKENS * MAX_PRICE_PER_UNIT / 1e6
            assert totals()["freshness"]["quarantined"] == 0
    finally:
        server.stop()


def test_unknown_latency_is_valid_and_left_out_of_percentiles(engine, settings, app_keys):
    if not {c["name"]: c["nullable"] for c in inspect(engine).get_columns("interaction")}["latency_ms"]:
        pytest.skip("this store's latency_ms is NOT NULL (unknown latency comes with a later migration)")
    timed, unknown, other = store(engine, app_keys, 3)
    change(engine, unknown, latency_ms=None)
    change(engine, other, latency_ms=1850)
    analytics = Analytics(settings)
    try:
        analytics.refresh()
        cursor = analytics.warehouse.cursor()
        assert cursor.execute("SELECT count(*) FROM quarantine").fetchall() == [(0,)]
        assert cursor.execute("SELECT interactions, latency_p50 FROM rollup_day").fetchall() == [(3, 1350.0)]
    finally:
        analytics.close()


@pytest.mark.parametrize("value", [f"{MAX_PRICE_PER_UNIT * 10:.0f}", "nan", "inf", "-1"])
def test_a_price_beyond_the_bound_is_refused(tmp_path, value):
    prices = tmp_path / "prices.csv"
    prices.write_text(PRICES + f"openai,gpt-4o-mini,0.15,,{value},,2024-01-01\n")
    with pytest.raises(PriceFileError, match=r"prices\.csv:2: output_per_mtok must be between 0 and 1,000,000"):
        load_prices(prices)
