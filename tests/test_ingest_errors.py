"""Every class of bad input gets a clear JSON error naming the field, and stores nothing."""

import logging

import pytest

from tests.conftest import count_rows
from tests.payloads import openai_chat

STORED_TABLES = ("interaction", "end_user", "interaction_session", "interaction_image")


@pytest.fixture
def nothing_stored(engine):
    yield
    assert {table: count_rows(engine, table) for table in STORED_TABLES} == dict.fromkeys(STORED_TABLES, 0)


def _fields(answer):
    return {error["field"] for error in answer.json()["errors"]}


def test_unparsable_json_is_400(client, nothing_stored):
    answer = client.post("/track", content=b'{"reconify": ', headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_json"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_not_json_is_415(client, app_keys, nothing_stored, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    answer = client.post("/track", content=b"{}", headers=headers)
    assert answer.status_code == 415


def test_body_over_limit_is_413(client, app_keys, nothing_stored):
    payload = openai_chat(app_keys, text="x" * (1024 * 1024))
    answer = client.post("/track", json=payload)
    assert answer.status_code == 413
    assert answer.json()["error"] == "payload_too_large"


def test_unknown_format_lists_supported_ones(client, app_keys, nothing_stored):
    payload = openai_chat(app_keys)
    payload["reconify"]["format"] = "gemini"
    answer = client.post("/track", json=payload)
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["field"] == "reconify.format"
    for supported in ("openai", "anthropic", "bedrock", "cohere", "mistral", "universal"):
        assert supported in error["message"]


def test_unknown_type_lists_the_formats_types(client, app_keys, nothing_stored):
    payload = openai_chat(app_keys)
    payload["reconify"]["type"] = "embedding"
    answer = client.post("/track", json=payload)
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["field"] == "reconify.type" and "chat, completion, image" in error["message"]


@pytest.mark.parametrize("mutate, field", [
    (lambda p: p.pop("reconify"), "reconify"),
    (lambda p: p["reconify"].pop("appKey"), "reconify.appKey"),
    (lambda p: p["reconify"].pop("apiKey"), "reconify.apiKey"),
    (lambda p: p.pop("request"), "request"),
    (lambda p: p.pop("response"), "response"),
    (lambda p: p.update(request=["not", "an", "object"]), "request"),
    (lambda p: p.update(timestamps={"request": "yesterday"}), "timestamps.request"),
    (lambda p: p.update(timestamps={"request": 1689703471}), "timestamps.request"),  # seconds, not ms
    (lambda p: p.update(sessionTimeout=-5), "sessionTimeout"),
    (lambda p: p.update(sessionTimeOut="soon"), "sessionTimeOut"),
    (lambda p: p.update(user="jane"), "user"),
    (lambda p: p.update(user={"userId": {"nested": 1}}), "user.userId"),
])
def test_schema_errors_name_the_field(client, app_keys, nothing_stored, mutate, field):
    payload = openai_chat(app_keys)
    mutate(payload)
    answer = client.post("/track", json=payload)
    assert answer.status_code == 422, answer.text
    assert field in _fields(answer)


def test_array_on_track_is_422(client, nothing_stored):
    answer = client.post("/track", json=[1, 2])
    assert answer.status_code == 422


@pytest.mark.parametrize("which", ["unknown app", "wrong key"])
def test_bad_keys_get_the_same_401_without_echoing_secrets(client, app_keys, nothing_stored, caplog, which):
    payload = openai_chat(app_keys)
    secret = "tk_this-is-not-the-right-key"
    if which == "unknown app":
        payload["reconify"]["appKey"] = "app_unknown"
        payload["reconify"]["apiKey"] = app_keys.api_key
        secret = app_keys.api_key
    else:
        payload["reconify"]["apiKey"] = secret
    with caplog.at_level(logging.DEBUG):
        answer = client.post("/track", json=payload)
    assert answer.status_code == 401
    assert answer.json() == {"status": "error", "error": "unauthorized", "message": "unknown app key or wrong API key",
                             "errors": [{"field": "reconify.apiKey", "message": "unknown app key or wrong API key"}]}
    assert secret not in answer.text and secret not in caplog.text


def test_batch_answers_item_by_item(client, app_keys, engine):
    bad = openai_chat(app_keys)
    bad["reconify"]["apiKey"] = "tk_wrong"
    invalid = openai_chat(app_keys)
    del invalid["response"]
    answer = client.post("/track/batch", json=[openai_chat(app_keys), bad, invalid, openai_chat(app_keys)])
    assert answer.status_code == 200
    body = answer.json()
    assert [r["http_status"] for r in body["results"]] == [201, 401, 422, 201]
    assert [r["status"] for r in body["results"]] == ["ok", "error", "error", "ok"]
    assert body["stored"] == 2 and body["rejected"] == 2
    assert count_rows(engine, "interaction") == 2


def test_batch_over_item_limit_is_413(client, app_keys, nothing_stored):
    answer = client.post("/track/batch", json=[openai_chat(app_keys)] * 501)
    assert answer.status_code == 413


@pytest.mark.parametrize("body", [b"{}", b"[1", b'"x"'])
def test_batch_must_be_a_json_array(client, nothing_stored, body):
    answer = client.post("/track/batch", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code in (400, 422)
    assert answer.json()["status"] == "error"


def test_upload_with_bad_base64_is_422(client, app_keys, nothing_stored, live_server):
    answer = client.post("/upload", json={
        "reconify": {"format": "openai", "type": "image_upload", "appKey": app_keys.app_key,
                     "apiKey": app_keys.api_key},
        "upload": {"filename": "a-1-0.png", "type": "response-image", "data": {"b64_json": "@@@"}}})
    assert answer.status_code == 422
    assert _fields(answer) == {"upload.data"}
    assert not (live_server.settings.uploads_dir).exists() or not any(live_server.settings.uploads_dir.rglob("*.png"))


def test_upload_filename_cannot_escape_the_folder(client, app_keys, nothing_stored):
    answer = client.post("/upload", json={
        "reconify": {"format": "openai", "type": "image_upload", "appKey": app_keys.app_key,
                     "apiKey": app_keys.api_key},
        "upload": {"filename": "../../etc/passwd", "data": {"b64_json": "aGVsbG8="}}})
    assert answer.status_code == 422
    assert _fields(answer) == {"upload.filename"}


def test_read_api_needs_a_valid_token(client, nothing_stored):
    assert client.get("/api/v1/interactions/1").status_code == 401
    answer = client.get("/api/v1/interactions/1", headers={"Authorization": "Bearer tly_rt_wrong"})
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
