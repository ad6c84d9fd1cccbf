"""Fuzzing /track and /track/batch with hostile mutations of real payloads: never a 5xx, always the JSON shape."""

import copy

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.payloads import openai_chat

ERROR_CODES = {400, 401, 413, 415, 422}
_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([2**31, 2**63, -1, 0, 10**15, 1e300, 99_999_999_999_999, 100_000_000_000]),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=30),
    st.sampled_from(["", " ", "\u0000", "a\u0000b", "İ" * 200 + "@x.io", "x" * 400, "../../etc/passwd"]),
)
_json = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=12)


def _deep(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


_hostile = st.one_of(_json, st.integers(60, 300).map(_deep))


def _shapes(keys) -> list[dict]:
    """Real payloads of several formats, as the client modules send them."""
    reconify = {"appKey": keys.app_key, "apiKey": keys.api_key, "version": "3.0.0"}
    return [
        openai_chat(keys, user={"userId": "fuzz", "email": "fuzz@example.com", "firstName": "F"}),
        {"reconify": {**reconify, "format": "anthropic", "type": "chat"}, "session": "s-1", "sessionTimeout": 5,
         "request": {"model": "claude-3-haiku-20240307", "system": "be brief",
                     "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
         "response": {"id": "msg_1", "model": "claude-3-haiku-20240307", "stop_reason": "end_turn",
                      "content": [{"type": "text", "text": "hello"}],
                      "usage": {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 1}},
         "timestamps": {"request": 1_700_000_000_000, "response": 1_700_000_000_900}},
        {"reconify": {**reconify, "format": "bedrock", "type": "chat"}, "user": {"email": "b@example.com"},
         "request": {"modelId": "meta.llama3-8b-instruct-v1:0", "body": '{"prompt": "hi", "max_gen_len": 9}'},
         "response": {"requestId": "r-1", "body": {"generation": "yo", "prompt_token_count": 3,
                                                    "generation_token_count": 1}}},
        {"reconify": {**reconify, "format": "cohere", "type": "chat"},
         "request": {"model": "command-r", "message": "hi", "chat_history": [{"role": "USER", "message": "x"}]},
         "response": {"text": "hello", "generation_id": "g-1", "meta": {"billed_units": {"input_tokens": 3,
                                                                                          "output_tokens": 1}}}},
        {"reconify": {**reconify, "format": "universal", "type": "completion"}, "request": {"prompt": "hi"},
         "response": "plain text answer"},
    ]


def _paths(value, prefix=()) -> list[tuple]:
    """Every place in a payload a value sits, containers included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw, shapes: list[dict]) -> dict:
    payload = copy.deepcopy(draw(st.sampled_from(shapes)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(payload)[1:]))
        parent = payload
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_hostile)
    return payload


def _check_answer(status: int, body: dict) -> None:
    assert status < 500, body
    if body.get("status") == "ok":
        assert status in (200, 201) and isinstance(body["interaction_id"], int)
        return
    assert status in ERROR_CODES and body["status"] == "error", body
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    for error in body.get("errors", []):
        assert isinstance(error["field"], str) and isinstance(error["message"], str)


FUZZ = hypothesis_settings(max_examples=120, deadline=None, derandomize=True,
                           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def test_track_never_fails_on_hostile_payloads(client, app_keys, engine):
    shapes = _shapes(app_keys)

    @FUZZ
    @given(payload=mutated(shapes))
    def run(payload):
        answer = client.post("/track", json=payload)
        assert answer.headers["content-type"] == "application/json"
        _check_answer(answer.status_code, answer.json())

    run()


def test_batch_answers_each_hostile_item_and_stores_what_it_says(client, app_keys, engine):
    shapes = _shapes(app_keys)

    @FUZZ
    @given(items=st.lists(mutated(shapes), min_size=1, max_size=5))
    def run(items):
        with engine.connect() as conn:
            before = conn.execute(text("SELECT count(*) FROM interaction")).scalar_one()
        answer = client.post("/track/batch", json=items)
        assert answer.status_code in (200, 401), answer.text
        if answer.status_code == 401:  # the first payload's keys were broken: refused whole
            return
        body = answer.json()
        for result in body["results"]:
            _check_answer(result["http_status"], result)
        with engine.connect() as conn:
            after = conn.execute(text("SELECT count(*) FROM interaction")).scalar_one()
        new = len({r["interaction_id"] for r in body["results"] if r["http_status"] == 201})
        assert after - before == new

    run()


def test_fuzz_reaches_both_answers(client, app_keys):
    """The mutations are not all rejected: the fuzz exercises storing too."""
    statuses = {client.post("/track", json=shape).status_code for shape in _shapes(app_keys)}
    assert statuses == {201}
