"""The shortest path through the product: a payload in, the same interaction out of the read API."""

from tests.conftest import count_rows
from tests.payloads import openai_chat


def test_track_then_read_back(client, reader, app_keys, engine):
    answer = client.post("/track", json=openai_chat(app_keys, user={"userId": "u1", "firstName": "Jane"}))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    interaction = reader.get(f"/api/v1/interactions/{body['interaction_id']}").json()
    assert interaction["usage_source"] == "reported"
    assert interaction["prompt_tokens"] == 21
    assert interaction["user_id"] == body["user_id"]
    assert count_rows(engine, "interaction") == 1
