"""Sessions depend on timestamps only: any arrival order, batching or restart gives the same grouping."""

import itertools

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from sqlalchemy import text

from tally.ingest.batch import BatchStore
from tally.ingest.keys import VerifiedApp
from tally.ingest.prepare import prepare
from tally.ingest.sessions import group_sessions
from tally.ingest.wire import TrackPayload
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
        session_timeout=timeout_minutes, response_id=None))
    return prepare(payload, app=VerifiedApp(app_id, None), received_at=at, default_timeout_minutes=10)


def _store_in_order(engine, keys, points, order, cuts, restarts):
    """Store points in `order`, committing at `cuts`, forgetting the caches at `restarts` (a server restart)."""
    store = BatchStore()
    with engine.connect() as conn:
        app_id = conn.execute(text("SELECT id FROM app WHERE app_key = :k"), {"k": keys.app_key}).scalar_one()
    ids = {}
    bounds = sorted({0, len(order), *cuts})
    for start, end in zip(bounds, bounds[1:]):
        if start in restarts:
            store.forget()
        chunk = order[start:end]
        with engine.begin() as conn:
            results = store.store(conn, [_job(keys, app_id, points[i]) for i in chunk])
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
    inactivity = [i for i, p in enumerate(points) if not p[2]]
    explicit = [i for i, p in enumerate(points) if p[2]]
    labels = group_sessions([(points[i][0], points[i][1] * MINUTE) for i in inactivity])
    groups = _partition(labels)
    return sorted([[inactivity[i] for i in group] for group in groups] + ([explicit] if explicit else []))


points_strategy = st.lists(
    st.tuples(st.integers(BASE, BASE + 90 * MINUTE), st.sampled_from([2, 5, 10]), st.booleans()),
    min_size=1, max_size=14,
)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points=points_strategy, data=st.data())
def test_any_arrival_order_gives_the_same_sessions(engine, points, data):
    order = data.draw(st.permutations(range(len(points))), label="arrival order")
    cuts = data.draw(st.sets(st.integers(1, max(1, len(points) - 1))), label="commit points")
    restarts = data.draw(st.sets(st.integers(0, len(points))), label="restarts")
    keys = make_app(engine, name=f"app-{next(_app_names)}")
    stored = _store_in_order(engine, keys, points, order, cuts, restarts)
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
