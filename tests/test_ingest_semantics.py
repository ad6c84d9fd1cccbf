"""Users, timestamps, retries and images behave as the product's contract says."""

import base64
import time

import pytest

from tally.ingest.batch import store_batch
from tally.ingest.cache import StoreCache
from tally.ingest.keys import VerifiedApp
from tally.ingest.prepare import prepare
from tally.ingest.wire import TrackPayload
from tally.store.engine import writing
from tests.conftest import count_rows, make_app
from tests.payloads import openai_chat

BASE = 1_700_000_000_000


def _track(client, payload, status=201):
    answer = client.post("/track", json=payload)
    assert answer.status_code == status, answer.text
    return answer.json()


def test_user_by_user_id_and_by_email_case_insensitive(client, reader, app_keys):
    by_id = _track(client, openai_chat(app_keys, user={"userId": "ABC123", "firstName": "Jane"}))
    assert _track(client, openai_chat(app_keys, user={"userId": "ABC123"}))["user_id"] == by_id["user_id"]
    by_email = _track(client, openai_chat(app_keys, user={"email": "Sam@Example.com"}))
    assert _track(client, openai_chat(app_keys, user={"email": "sam@example.COM"}))["user_id"] == by_email["user_id"]
    assert by_email["user_id"] != by_id["user_id"]


@pytest.mark.parametrize("cached", [False, True])
def test_an_email_in_new_letter_case_keeps_its_user_within_a_batch(engine, cached):
    """An email-only user whose later interaction spells the email in other case (the profile takes that
    spelling) was forgotten by its email in the middle of a batch: the batch's next one made a second user."""
    keys = make_app(engine)

    def job(email: str, at_ms: int):
        payload = TrackPayload.model_validate(openai_chat(keys, user={"email": email}, at_ms=at_ms))
        return prepare(payload, app=VerifiedApp(1, None), received_at=BASE, default_timeout_minutes=10)

    cache = StoreCache() if cached else None
    with writing(engine).begin() as conn:
        first = store_batch(conn, [job("Sam@Mail.Example", BASE), job("sAM@mAIL.eXAMPLE", BASE + 60_000),
                                   job("sam@mail.example", BASE + 120_000)], cache)
    with writing(engine).begin() as conn:
        later = store_batch(conn, [job("SAM@MAIL.EXAMPLE", BASE + 180_000)], cache)
    assert len({stored.user_id for stored in first + later}) == 1
    assert count_rows(engine, "end_user") == 1


def test_payload_with_both_links_email_user_to_user_id(client, reader, app_keys):
    email_only = _track(client, openai_chat(app_keys, user={"email": "kim@example.com"}))
    both = _track(client, openai_chat(app_keys, user={"userId": "kim-1", "email": "KIM@example.com"}))
    assert both["user_id"] == email_only["user_id"]
    assert _track(client, openai_chat(app_keys, user={"userId": "kim-1"}))["user_id"] == email_only["user_id"]
    assert reader.get(f"/api/v1/users/{both['user_id']}").json()["user_id"] == "kim-1"


def test_without_identity_every_interaction_is_a_new_user(client, app_keys, engine):
    first = _track(client, openai_chat(app_keys, user={}))
    second = _track(client, openai_chat(app_keys, user={"firstName": "NoId"}))
    assert first["user_id"] != second["user_id"] and first["session_id"] != second["session_id"]
    assert count_rows(engine, "end_user") == 2


def test_profile_keeps_latest_non_empty_values(client, reader, app_keys):
    user = {"userId": "p1", "firstName": "Jane", "lastName": "Doe", "isAuthenticated": 0}
    answer = _track(client, openai_chat(app_keys, user=user, at_ms=BASE))
    _track(client, openai_chat(app_keys, user={"userId": "p1", "firstName": "Janet", "lastName": "",
                                              "isAuthenticated": 1, "phone": 5551234}, at_ms=BASE + 1000))
    _track(client, openai_chat(app_keys, user={"userId": "p1", "firstName": "Old"}, at_ms=BASE - 1000))
    profile = reader.get(f"/api/v1/users/{answer['user_id']}").json()
    assert (profile["first_name"], profile["last_name"], profile["is_authenticated"], profile["phone"]) == (
        "Janet", "Doe", True, "5551234")
    assert (profile["first_seen"], profile["last_seen"], profile["interaction_count"]) == (BASE - 1000, BASE + 1000, 3)
    assert [(s["turns"], s["started_at"]) for s in profile["sessions"]] == [(3, BASE - 1000)]


def test_missing_timestamps_become_time_of_receipt(client, reader, app_keys):
    payload = openai_chat(app_keys)
    del payload["timestamps"]
    before = int(time.time() * 1000)
    stored = reader.get(f"/api/v1/interactions/{_track(client, payload)['interaction_id']}").json()
    assert before <= stored["request_at"] == stored["response_at"] <= int(time.time() * 1000)
    assert stored["latency_ms"] is None  # no response time: the latency is unknown, not 0


def test_missing_response_time_is_the_request_time(client, reader, app_keys):
    payload = openai_chat(app_keys, at_ms=BASE)
    payload["timestamps"] = {"request": BASE}
    stored = reader.get(f"/api/v1/interactions/{_track(client, payload)['interaction_id']}").json()
    assert stored["request_at"] == stored["response_at"] == BASE


def test_retry_with_same_response_id_is_stored_once(client, app_keys, engine):
    payload = openai_chat(app_keys, response_id="chatcmpl-retry-1")
    first = _track(client, payload, 201)
    again = _track(client, payload, 200)
    assert again == {**first, "duplicate": True}
    batch = client.post("/track/batch", json=[openai_chat(app_keys, response_id="chatcmpl-retry-2")] * 3).json()
    assert [r["http_status"] for r in batch["results"]] == [201, 200, 200]
    assert len({r["interaction_id"] for r in batch["results"]}) == 1
    assert count_rows(engine, "interaction") == 2


def test_same_response_id_in_two_apps_is_two_interactions(client, engine, app_keys):
    from tests.conftest import make_app

    other = make_app(engine, name="other-app")
    _track(client, openai_chat(app_keys, response_id="chatcmpl-shared"))
    _track(client, openai_chat(other, response_id="chatcmpl-shared"))
    assert count_rows(engine, "interaction") == 2


def _image_payload(keys, filenames):
    return {"reconify": {"format": "openai", "type": "image", "version": "3.0.0", "appKey": keys.app_key,
                         "apiKey": keys.api_key},
            "request": {"model": "dall-e-3", "prompt": "a cat on the moon", "response_format": "b64_json"},
            "response": {"created": 1700000000, "data": filenames}, "user": {}, "session": "",
            "sessionTimeout": ""}


def _upload(client, keys, filename, content=b"\x89PNG fake image"):
    return client.post("/upload", json={
        "reconify": {"format": "openai", "type": "image_upload", "version": "3.0.0", "appKey": keys.app_key,
                     "apiKey": keys.api_key},
        "upload": {"filename": filename, "type": "response-image", "format": "b64_json",
                   "data": {"b64_json": base64.b64encode(content).decode(), "revised_prompt": None}}})


def test_upload_links_to_its_interaction_whichever_arrives_first(client, reader, app_keys):
    early = _upload(client, app_keys, "early-1700000000-0.png")
    assert early.status_code == 201 and early.json()["interaction_id"] is None
    stored = _track(client, _image_payload(app_keys, ["early-1700000000-0.png", "late-1700000000-1.png"]))
    late = _upload(client, app_keys, "late-1700000000-1.png", b"second image")
    assert late.json()["interaction_id"] == stored["interaction_id"]
    interaction = reader.get(f"/api/v1/interactions/{stored['interaction_id']}").json()
    assert interaction["image_count"] == 2 and interaction["usage_source"] == "absent"
    assert [(i["filename"], i["uploaded"]) for i in interaction["images"]] == [
        ("early-1700000000-0.png", True), ("late-1700000000-1.png", True)]
    assert reader.get(interaction["images"][1]["url"]).content == b"second image"


def test_storage_process_death_loses_nothing_acknowledged(client, app_keys, engine, live_server):
    import os
    import signal

    writer = live_server.server.config.app.inner.state.ingest.writer
    acknowledged = {_track(client, openai_chat(app_keys))["interaction_id"]}
    os.kill(writer.storage_pid, signal.SIGKILL)
    after_death = client.post("/track", json=openai_chat(app_keys))
    # Never a 2xx for a row that was not stored; the failure says to retry, with a Retry-After.
    assert after_death.status_code in (201, 503), after_death.text
    if after_death.status_code == 503:
        assert after_death.headers["Retry-After"] and after_death.json()["error"] == "storage_unavailable"
    if after_death.status_code == 201:
        acknowledged.add(after_death.json()["interaction_id"])
    acknowledged.add(_track(client, openai_chat(app_keys))["interaction_id"])  # a new storage process took over
    with engine.connect() as conn:
        from sqlalchemy import text

        stored = set(conn.execute(text("SELECT id FROM interaction")).scalars())
    assert acknowledged <= stored
