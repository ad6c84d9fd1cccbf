"""Payload shapes the public client modules send, beyond what the Python modules exercise."""

from tally.ingest.normalised import estimate_tokens
from tally.ingest.providers import normalise


def test_node_module_shapes_are_accepted(client, reader, app_keys):
    """The Node module sends `session: null`, no sessionTimeout, no timestamps, and `response: null` when
    the OpenAI call returned no data; the answer carries `status: "ok"`, which the module checks."""
    payload = {
        "reconify": {"format": "openai", "type": "chat", "version": "2.2.0", "appKey": app_keys.app_key,
                     "apiKey": app_keys.api_key},
        "request": {"model": "gpt-4", "messages": [{"role": "user", "content": "hello"}]},
        "response": None, "user": {}, "session": None,
    }
    answer = client.post("/track", json=payload)
    assert answer.status_code == 201 and answer.json()["status"] == "ok"
    stored = reader.get(f"/api/v1/interactions/{answer.json()['interaction_id']}").json()
    assert (stored["is_error"], stored["model"], stored["input_text"], stored["output_text"]) == (
        True, "gpt-4", "hello", "")


def test_session_timeout_spelling_variants(client, reader, app_keys):
    from tests.payloads import openai_chat

    base = 1_700_000_000_000
    user = {"userId": "spelling"}
    first = openai_chat(app_keys, user=user, at_ms=base)
    first.pop("sessionTimeout")
    first["sessionTimeOut"] = "30"  # a numeric string, in the docs' other spelling
    one = client.post("/track", json=first).json()
    two = client.post("/track", json=openai_chat(app_keys, user=user, at_ms=base + 20 * 60_000)).json()
    assert one["session_id"] == two["session_id"]  # 20 minutes is within the first one's 30


def test_estimate_counts_ascii_by_fours_and_other_characters_singly():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("日本語") == 3


def test_missing_usage_is_estimated_never_zero():
    result = normalise("openai", "chat", {"model": "m", "messages": [{"role": "user", "content": "a" * 40}]},
                       {"id": "x", "model": "m", "choices": [{"message": {"content": "b" * 20}}]})
    assert (result.usage_source, result.prompt_tokens, result.completion_tokens) == ("estimated", 14, 5)


def test_universal_plain_string_response():
    result = normalise("universal", "chat", {"model": "local-llm", "prompt": "Say hi"}, "hi there")
    assert (result.model, result.input_text, result.output_text, result.usage_source) == (
        "local-llm", "Say hi", "hi there", "estimated")
