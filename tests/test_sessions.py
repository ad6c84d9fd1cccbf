"""Sessions depend on timestamps only: any arrival order, batching or restart gives the same grouping."""

import itertools

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text

from tally.ingest.batch import store_batch
from tally.ingest.cache import StoreCache
from tally.ingest.keys import VerifiedApp
from tally.ingest.prepare import prepare
from tally.ingest.sessions import group_sessions
from tally.ingest.wire import TrackPayload
from tally.store.engine import build_engine
from tests.conftest import make_app
from tests.payloads import openai_chat

MINUTE = 60_000
BASE = 1_700_000_000_000
_app_names = itertools.count()


def test_rule_gap_against_earlier_timeout():
    # 0 → 5 min: within the first one's 10 min; 5 → 16: 11 min, beyond the second one's 10 min.
    points = [(BASE, 10 * MINUTE), (BASE + 5 * MINUTE, 10 * MINUTE), (BASE + 16 * MINUTE, 10 * MINUTE)]
    assert group_sessions(points) == [0, 0, 1]


def test_rule_uses_the_earlier_interactions_timeout():
    # The 3-minute gap is within the earlier one's 5 minutes though beyond the later one's 1 minute.
    assert group_sessions([(BASE, 5 * MINUTE), (BASE + 3 * MINUTE, MINUTE)]) == [0, 0]
    assert group_sessions([(BASE, MINUTE), (BASE + 3 * MINUTE, 5 * MINUTE)]) == [0, 1]


def test_rule_gap_equal_to_timeout_stays_in_session():
    assert group_sessions([(BASE, 10 * MINUTE), (BASE + 10 * MINUTE, 10 * MINUTE)]) == [0, 0]


def test_rule_ties_take_the_longest_timeout_whatever_their_order():
    # Two interactions at one instant, with 2 and 5 minutes; the next comes 3 minutes later.
    for tied in ([(BASE, 2 * MINUTE), (BASE, 5 * MINUTE)], [(BASE, 5 * MINUTE), (BASE, 2 * MINUTE)]):
        assert group_sessions([*tied, (BASE + 3 * MINUTE, MINUTE)]) == [0, 0, 0]


def _job(keys, app_id, point):
    at, timeout_minutes, explicit = point
    payload = TrackPayload.model_validate(openai_chat(
        keys, user={"userId": "same-user"}, at_ms=at, session="chat-1" if explicit else "",
        session_timeout="" if timeout_minutes is None else timeout_minutes, response_id=None))
    return prepare(payload, app=VerifiedApp(app_id, None), received_at=at, default_timeout_minutes=10)


def _store_in_order(engine, other_writer, keys, points, order, cuts, writes):
    """Store points in `order` through one cache, committing at `cuts`; the chunks starting at `writes` are
    stored by another connection (as a CLI command would), which must make the cache forget what it knew."""
    with engine.connect() as conn:
        app_id = conn.execute(text("SELECT id FROM app WHERE app_key = :k"), {"k": keys.app_key}).scalar_one()
    ids = {}
    cache = StoreCache()
    bounds = sorted({0, len(order), *cuts})
    for start, end in zip(bounds, bounds[1:]):
        chunk = order[start:end]
        jobs = [_job(keys, app_id, points[i]) for i in chunk]
        with (other_writer if start in writes else engine).begin() as conn:
            results = store_batch(conn, jobs) if start in writes else store_batch(conn, jobs, cache)
        ids.update({i: r.interaction_id for i, r in zip(chunk, results)})
    with engine.connect() as conn:
        session_of = dict(conn.execute(text("SELECT id, session_id FROM interaction WHERE app_id = :a"),
                                       {"a": app_id}).all())
    return [session_of[ids[i]] for i in range(len(points))]


def _partition(labels):
    groups = {}
    for index, label in enumerate(labels):
        groups.setdefault(label, set()).add(index)
    return sorted(sorted(group) for group in groups.values())


def _expected(points):
    """The rule, applied to each grouping key: a payload's timeout ends implicit and explicit sessions alike;
    without one, an implicit session takes the default (10 minutes) and an explicit one never times out."""
    groups = []
    for explicit in (False, True):
        members = [i for i, p in enumerate(points) if p[2] == explicit]
        timeouts = [points[i][1] * MINUTE if points[i][1] is not None else (None if explicit else 10 * MINUTE)
                    for i in members]
        labels = group_sessions([(points[i][0], timeout) for i, timeout in zip(members, timeouts)])
        groups += [[members[i] for i in group] for group in _partition(labels)]
    return sorted(groups)


@pytest.fixture
def other_writer(settings):
    """A second engine on the same store: its commits come from another connection."""
    engine = build_engine(settings)
    yield engine
    engine.dispose()


points_strategy = st.lists(
    st.tuples(st.integers(BASE, BASE + 90 * MINUTE), st.sampled_from([None, 2, 5, 10]), st.booleans()),
    min_size=1, max_size=14,
)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=points_strategy, data=st.data())
def test_any_arrival_order_gives_the_same_sessions(engine, other_writer, points, data):
    order = data.draw(st.permutations(range(len(points))), label="arrival order")
    cuts = data.draw(st.sets(st.integers(1, max(1, len(points) - 1))), label="commit points")
    writes = data.draw(st.sets(st.integers(0, len(points))), label="other writers")
    keys = make_app(engine, name=f"app-{next(_app_names)}")
    stored = _store_in_order(engine, other_writer, keys, points, order, cuts, writes)
    assert _partition(stored) == _expected(points)


def test_late_arrival_merges_then_splits_over_http(client, reader, app_keys):
    """Two sessions 15 minutes apart merge when the interaction between them arrives late."""
    user = {"userId": "late-user"}
    first = client.post("/track", json=openai_chat(app_keys, user=user, at_ms=BASE)).json()
    third = client.post("/track", json=openai_chat(app_keys, user=user, at_ms=BASE + 15 * MINUTE)).json()
    assert first["session_id"] != third["session_id"]
    middle = client.post("/track", json=openai_chat(app_keys, user=user, at_ms=BASE + 8 * MINUTE)).json()
    assert middle["session_id"] == first["session_id"]
    merged = reader.get(f"/api/v1/sessions/{third['session_id']}").json()
    assert merged["id"] == first["session_id"]
    assert merged["interaction_count"] == 3
    assert [m["interaction_id"] for m in merged["messages"] if m["role"] == "assistant"] == [
        first["interaction_id"], middle["interaction_id"], third["interaction_id"]]
    # A late interaction with a short timeout splits the session after it.
    short = openai_chat(app_keys, user=user, at_ms=BASE + 9 * MINUTE, session_timeout=1)
    client.post("/track", json=short)
    assert reader.get(f"/api/v1/interactions/{third['interaction_id']}").json()["session_id"] != first["session_id"]


def test_the_cache_forgets_what_another_writer_changed(engine, other_writer):
    """0 min (stored through the cache), 8 min (by another connection), 16 min (through the cache): 16 − 8 is within
    the 10-minute timeout, so all three are one session; a cache still holding 0 as the last would split them."""
    keys = make_app(engine, name=f"app-{next(_app_names)}")
    points = [(BASE, None, False), (BASE + 8 * MINUTE, None, False), (BASE + 16 * MINUTE, None, False)]
    stored = _store_in_order(engine, other_writer, keys, points, [0, 1, 2], {1, 2}, {1})
    assert len(set(stored)) == 1
