"""The ingest edge: keys in headers, a batch refused before it is parsed, bodies that must arrive in time."""

import socket
import time

import orjson
import pytest

from tests.conftest import count_rows, start_server
from tests.payloads import openai_chat


def _without_keys(payload):
    del payload["reconify"]["appKey"], payload["reconify"]["apiKey"]
    return payload


def test_keys_in_headers_stand_in_for_keys_the_payload_lacks(client, app_keys, engine):
    headers = {"Tally-App-Key": app_keys.app_key, "Tally-Api-Key": app_keys.api_key}
    assert client.post("/track", json=_without_keys(openai_chat(app_keys)), headers=headers).status_code == 201
    batch = [_without_keys(openai_chat(app_keys)), openai_chat(app_keys)]
    answer = client.post("/track/batch", json=batch, headers=headers).json()
    assert [r["http_status"] for r in answer["results"]] == [201, 201]
    assert client.post("/track", json=_without_keys(openai_chat(app_keys))).status_code == 422
    assert count_rows(engine, "interaction") == 3


def test_wrong_header_keys_are_refused_before_the_body_is_read(live_server, app_keys):
    """The server answers 401 while the client has sent only the headers of a large body."""
    host, port = live_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /track/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 30000000\r\nTally-App-Key: " + app_keys.app_key.encode()
                     + b"\r\nTally-Api-Key: tk_wrong\r\n\r\n[")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_a_batch_whose_first_payload_has_a_wrong_key_is_refused_unparsed(client, app_keys, engine):
    first = openai_chat(app_keys)
    first["reconify"]["apiKey"] = "tk_wrong"
    # The rest is not even JSON: an answer of 401 rather than 400 shows it was never parsed.
    body = b"[" + orjson.dumps(first) + b", {not json" + b" " * 1_000_000 + b"]"
    answer = client.post("/track/batch", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
    # A valid first payload's batch is parsed and answered item by item, as before.
    good = client.post("/track/batch", json=[openai_chat(app_keys), first]).json()
    assert [r["http_status"] for r in good["results"]] == [201, 401]
    assert count_rows(engine, "interaction") == 1


@pytest.fixture
def impatient_server(engine, settings):
    server = start_server(settings.model_copy(update={"body_timeout_seconds": 1.0}))
    yield server
    server.stop()


@pytest.mark.parametrize("path", ["/track", "/login"])
def test_a_body_that_trickles_in_is_cut_off(impatient_server, path):
    host, port = impatient_server.url.removeprefix("http://").split(":")
    content_type = b"application/json" if path == "/track" else b"application/x-www-form-urlencoded"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type
                     + b"\r\nContent-Length: 1000\r\n\r\n{")
        received = b""
        while chunk := sock.recv(65536):  # the server closes the connection
            received += chunk
        elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed
    if path == "/track":
        assert received.startswith(b"HTTP/1.1 408"), received[:200]
