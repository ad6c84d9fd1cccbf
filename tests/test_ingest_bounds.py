"""Hostile and broken payloads get the same clear answer on SQLite and PostgreSQL, and nothing half-stored."""

import orjson
import pytest

from tally.store.limits import MAX_JSON_DEPTH, MAX_TOKENS
from tests.conftest import count_rows
from tests.payloads import openai_chat

BASE = 1_700_000_000_000
MINUTE = 60_000


def _refused(client, payload, field):
    answer = client.post("/track", json=payload)
    assert answer.status_code == 422, answer.text
    assert field in {error["field"] for error in answer.json()["errors"]}, answer.json()
    return answer.json()


def _stored(client, reader, payload, status=201):
    answer = client.post("/track", json=payload)
    assert answer.status_code == status, answer.text
    return answer.json(), reader.get(f"/api/v1/interactions/{answer.json()['interaction_id']}").json()


@pytest.mark.parametrize("usage, field", [
    ({"prompt_tokens": -5, "completion_tokens": 3}, "response.usage.prompt_tokens"),
    ({"prompt_tokens": 10**15, "completion_tokens": 3}, "response.usage.prompt_tokens"),
    ({"prompt_tokens": 2**63, "completion_tokens": 3}, "response.usage.prompt_tokens"),
    ({"prompt_tokens": 2**31, "completion_tokens": 3}, "response.usage.prompt_tokens"),
    ({"prompt_tokens": 1e300, "completion_tokens": 3}, "response.usage.prompt_tokens"),
    ({"prompt_tokens": 12.5, "completion_tokens": 3}, "response.usage.prompt_tokens"),
    ({"prompt_tokens": 5, "completion_tokens": -1}, "response.usage.completion_tokens"),
    ({"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 6}},
     "response.usage.prompt_tokens_details.cached_tokens"),
])
def test_token_counts_out_of_bounds_are_refused(client, app_keys, engine, usage, field):
    payload = openai_chat(app_keys)
    payload["response"]["usage"] = usage
    _refused(client, payload, field)
    assert count_rows(engine, "interaction") == 0


def test_token_counts_at_the_bounds_are_stored(client, reader, app_keys):
    payload = openai_chat(app_keys)
    payload["response"]["usage"] = {"prompt_tokens": MAX_TOKENS, "completion_tokens": 0,
                                    "prompt_tokens_details": {"cached_tokens": MAX_TOKENS}}
    _, stored = _stored(client, reader, payload)
    assert (stored["prompt_tokens"], stored["cached_prompt_tokens"], stored["completion_tokens"]) == (
        MAX_TOKENS, MAX_TOKENS, 0)


def test_anthropic_input_parts_adding_up_past_the_bound_are_refused(client, app_keys):
    payload = {"reconify": {"format": "anthropic", "type": "chat", "appKey": app_keys.app_key,
                            "apiKey": app_keys.api_key},
               "request": {"model": "claude-3-haiku-20240307", "messages": [{"role": "user", "content": "hi"}]},
               "response": {"id": "msg_1", "content": [{"type": "text", "text": "hello"}],
                            "usage": {"input_tokens": MAX_TOKENS, "cache_read_input_tokens": MAX_TOKENS,
                                      "output_tokens": 1}}}
    _refused(client, payload, "response.usage")


def test_a_broken_response_is_stored_flagged_malformed(client, reader, app_keys):
    payload = openai_chat(app_keys)
    payload["response"]["choices"] = "oops"
    payload["response"]["usage"] = {"prompt_tokens": "21", "completion_tokens": 31}
    answer, stored = _stored(client, reader, payload)
    problems = {"response.choices": "must be an array", "response.usage.prompt_tokens": "must be a number of tokens"}
    assert {w["field"]: w["message"] for w in answer["warnings"]} == problems
    assert {m["field"]: m["message"] for m in stored["malformed"]} == problems
    assert stored["output_text"] == "" and stored["completion_tokens"] == 31
    healthy = _stored(client, reader, openai_chat(app_keys))
    assert "warnings" not in healthy[0] and healthy[1]["malformed"] is None


def test_nul_in_text_is_kept_in_the_raw_json_and_replaced_in_columns(client, reader, app_keys):
    payload = openai_chat(app_keys, text="before\u0000after")
    payload["response"]["model"] = "gpt\u00004o"
    _, stored = _stored(client, reader, payload)
    assert stored["input_text"] == "before\ufffdafter" and stored["model"] == "gpt\ufffd4o"
    assert stored["request"]["messages"][-1]["content"] == "before\u0000after"


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p.update(user={"userId": "ab\u0000c"}), "user.userId"),
    (lambda p: p.update(user={"email": "a\u0000@example.com"}), "user.email"),
    (lambda p: p.update(user={"userId": "u", "firstName": "J\u0000"}), "user.firstName"),
    (lambda p: p.update(session="chat\u00001"), "session"),
    (lambda p: p["reconify"].update(version="3\u0000"), "reconify.version"),
    # `İ` lower-cases to two characters: 200 of them make a 400-character email key
    (lambda p: p.update(user={"email": "\u0130" * 200 + "@example.com"}), "user.email"),
])
def test_identity_values_a_store_cannot_hold_are_refused(client, app_keys, engine, mutate, field):
    payload = openai_chat(app_keys)
    mutate(payload)
    _refused(client, payload, field)
    assert count_rows(engine, "end_user") == 0


def test_times_too_far_apart_or_in_the_future_are_refused(client, app_keys):
    payload = openai_chat(app_keys, at_ms=BASE)
    payload["timestamps"]["response"] = BASE + 2**31
    _refused(client, payload, "timestamps.response")
    future = openai_chat(app_keys, at_ms=BASE)
    future["timestamps"] = {"request": 99_999_999_999_999, "response": 99_999_999_999_999}
    _refused(client, future, "timestamps.request")


def test_unknown_latency_is_null_not_zero(client, reader, app_keys):
    backwards = openai_chat(app_keys, at_ms=BASE)
    backwards["timestamps"]["response"] = BASE - 5000
    _, stored = _stored(client, reader, backwards)
    assert stored["latency_ms"] is None and stored["response_at"] == stored["request_at"] == BASE
    only_response = openai_chat(app_keys, at_ms=BASE)
    only_response["timestamps"] = {"response": BASE + 900}
    _, stored = _stored(client, reader, only_response)
    assert (stored["request_at"], stored["response_at"], stored["latency_ms"]) == (BASE + 900, BASE + 900, None)
    _, stored = _stored(client, reader, openai_chat(app_keys, at_ms=BASE))
    assert stored["latency_ms"] == 850


def _nested(depth):
    value: object = "deep"
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _with_deep_tools(payload, depth) -> bytes:
    """The payload's JSON with `request.tools` nested `depth` objects deep (built as text: Python's own json
    module would hit its recursion limit first)."""
    payload["request"]["tools"] = "@DEEP@"
    return orjson.dumps(payload).replace(b'"@DEEP@"', b'{"a":' * (depth - 1) + b'"deep"' + b"}" * (depth - 1))


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 254, 400, 1000])
def test_deep_nesting_is_a_422_for_that_item_alone(client, app_keys, engine, depth):
    deep = _with_deep_tools(openai_chat(app_keys), depth)
    answer = client.post("/track", content=deep, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "request", answer.text
    batch = b"[" + b",".join([orjson.dumps(openai_chat(app_keys)), deep, orjson.dumps(openai_chat(app_keys))]) + b"]"
    answer = client.post("/track/batch", content=batch, headers={"Content-Type": "application/json"})
    assert [r["http_status"] for r in answer.json()["results"]] == [201, 422, 201]
    assert count_rows(engine, "interaction") == 2


def test_nesting_at_the_limit_is_stored(client, reader, app_keys):
    payload = openai_chat(app_keys)
    payload["request"]["tools"] = _nested(MAX_JSON_DEPTH - 1)  # request (1) > tools … = the limit
    _stored(client, reader, payload)


def test_a_non_string_model_is_not_stored_as_a_python_repr(client, reader, app_keys):
    payload = openai_chat(app_keys)
    payload["response"]["model"] = {"name": "x"}
    payload["request"]["model"] = 4
    _, stored = _stored(client, reader, payload)
    assert stored["model"] == "4"


def test_long_response_ids_sharing_a_prefix_are_two_interactions(client, app_keys, engine):
    first = openai_chat(app_keys, response_id="r" * 300 + "-1")
    second = openai_chat(app_keys, response_id="r" * 300 + "-2")
    assert client.post("/track", json=first).status_code == 201
    assert client.post("/track", json=second).status_code == 201
    assert client.post("/track", json=first).status_code == 200  # still a retry of the first
    assert count_rows(engine, "interaction") == 2


def test_an_image_name_no_upload_could_have_is_counted_not_linked(client, reader, app_keys):
    payload = {"reconify": {"format": "openai", "type": "image", "appKey": app_keys.app_key,
                            "apiKey": app_keys.api_key},
               "request": {"model": "dall-e-3", "prompt": "a cat"},
               "response": {"created": 1, "data": ["x" * 300 + ".png", "../etc/passwd", "ok-1-0.png"]}}
    _, stored = _stored(client, reader, payload)
    assert stored["image_count"] == 3 and [i["filename"] for i in stored["images"]] == ["ok-1-0.png"]


def test_profile_keeps_the_latest_value_by_request_time_not_arrival(client, reader, app_keys):
    alice = {"userId": "late-profile", "firstName": "Alice"}
    first, _ = _stored(client, reader, openai_chat(app_keys, user=alice, at_ms=BASE))
    _stored(client, reader, openai_chat(app_keys, user=alice, at_ms=BASE + 300_000))
    _stored(client, reader, openai_chat(app_keys, user={**alice, "firstName": "Bob"}, at_ms=BASE + 200_000))
    assert reader.get(f"/api/v1/users/{first['user_id']}").json()["first_name"] == "Alice"


def test_an_explicit_session_with_a_timeout_ends_after_a_longer_gap(client, app_keys):
    def post(at, timeout):
        payload = openai_chat(app_keys, user={"userId": "explicit"}, session="S-x", session_timeout=timeout,
                              at_ms=at)
        return client.post("/track", json=payload).json()["session_id"]

    first = post(BASE, 5)
    assert post(BASE + 7 * MINUTE, 5) != first  # the same id after a 7-minute gap: a new session
    without = post(BASE + 60 * MINUTE, "")  # no timeout: this one never times out
    assert post(BASE + 600 * MINUTE, "") == without


def test_a_transcript_reads_rows_stored_before_the_bounds(client, reader, app_keys, engine):
    """A row stored by an older Tally with a token count now refused still shows in its session's transcript."""
    from sqlalchemy import text

    answer = client.post("/track", json=openai_chat(app_keys, text="old row")).json()
    payload = openai_chat(app_keys, text="old row")
    payload["response"]["usage"]["prompt_tokens"] = 10**15
    with engine.begin() as conn:
        conn.execute(text("UPDATE interaction SET response_json = :r WHERE id = :i"),
                     {"r": orjson.dumps(payload["response"]).decode(), "i": answer["interaction_id"]})
    session = reader.get(f"/api/v1/sessions/{answer['session_id']}")
    assert session.status_code == 200
    assert [m["content"] for m in session.json()["messages"] if m["role"] == "user"] == ["old row"]


def test_the_dashboard_shows_a_malformed_response_and_an_unknown_latency(engine, settings, app_keys):
    import httpx

    from tests.conftest import wait_until
    from tests.dashboard_support import add_account, log_in, start_dashboard

    add_account(engine)
    server = start_dashboard(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as browser:
            payload = openai_chat(app_keys)
            payload["response"]["choices"] = "oops"
            del payload["timestamps"]["response"]
            interaction_id = browser.post("/track", json=payload).json()["interaction_id"]
            log_in(browser)
            detail = browser.get(f"/dashboard/interactions/{interaction_id}").text
            assert "Malformed response" in detail and "response.choices" in detail and "must be an array" in detail
            assert wait_until(lambda: "malformed" in browser.get("/dashboard/interactions?range=90d").text)
            listed = browser.get("/dashboard/interactions?range=90d").text
            assert "0 ms" not in listed  # the unknown latency is not shown as zero
    finally:
        server.stop()
