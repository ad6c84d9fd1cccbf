"""Redaction at ingest: the detectors on a corpus of real formats (and of look-alikes that must be left alone), and
the server, an app's own policy, the CLI and the admin API end to end: what is stored is redacted everywhere, the
numbers are those of what was sent."""

import httpx
import pytest
import sqlalchemy

from tally.ingest.redaction import Policy, PolicyError, Redactor
from tests.conftest import make_app, make_token, start_server
from tests.payloads import openai_chat

FOUND = [  # (text, what it holds)
    ("write to John.Doe+news@Example.co.uk today", "EMAIL"),
    ("cc: ops@corp.io", "EMAIL"),
    ("call +33 6 12 34 56 78", "PHONE"),
    ("call (555) 123-4567", "PHONE"),
    ("call 555-123-4567 now", "PHONE"),
    ("call +1-202-555-0143", "PHONE"),
    ("ring 06 12 34 56 78", "PHONE"),
    ("London +44 20 7946 0958", "PHONE"),
    ("Berlin +49 30 12345678", "PHONE"),
    ("US 202.555.0143 (office)", "PHONE"),
    ("visa 4111 1111 1111 1111", "CARD"),
    ("mc 5500-0000-0000-0004", "CARD"),
    ("amex 378282246310005", "CARD"),
    ("discover 6011 1111 1111 1117", "CARD"),
    ("jcb 3530111333300000", "CARD"),
    ("IBAN DE89 3704 0044 0532 0130 00 AND more", "IBAN"),
    ("pay GB82WEST12345698765432", "IBAN"),
    ("FR14 2004 1010 0505 0001 3M02 606 please", "IBAN"),
    ("from 192.168.1.10 at noon", "IP"),
    ("v6 2001:db8::8a2e:370:7334", "IP"),
    ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334 ok", "IP"),
    ("key sk-proj-abcdEFGH1234ijklMNOP5678qrst", "SECRET"),
    ("key sk-ant-api03-AbCdEf0123456789xyzXYZ", "SECRET"),
    ("aws AKIAIOSFODNN7EXAMPLE", "SECRET"),
    ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "SECRET"),
    ('{"password": "correct-horse-battery"}', "SECRET"),
    ("token 9fQ2xLp7Rk3ZbW8nYt5VcD1mHs6JaEu4", "SECRET"),
    ("gh ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "SECRET"),
    ("slack xoxb-123456789012-abcdefABCDEF", "SECRET"),
    ("google AIzaSyA-abcdefghijklmnopqrstuvwxyz12345", "SECRET"),
]
LEFT_ALONE = [  # look-alikes a redactor must not touch
    "order ORD-2024-000123 and INV-00012345, order #100245873",
    "at 2024-11-30 12:45:10, 2024-11-30T12:45:10.123Z, 30/11/2024 and 11.30.2024",
    "epoch 1732000000000 and 1732000000",
    "uuid 123e4567-e89b-12d3-a456-426614174000 and 123E4567-E89B-12D3-A456-426614174000",
    "version 3.11.4, price 1,234.56 USD, 10:30:00, ratio 3:2, std::vector, a::b",
    "getAccessTokenForUser internationalization Constantinople",
    "tracking 1Z999AA10123456784, zip 75008, EAN 4006381333931, page 12-34, 2024 11 30",
    "hash e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "card-like but not Luhn: 4111 1111 1111 1112",
    "IBAN-like but wrong check: DE00 3704 0044 0532 0130 00",
    "ISBN 978-3-16-148410-0, invoice 2024/11/000123, Tel-Aviv, 24/7 support",
    "sizes 1920x1080, 3.14159265358979, coordinates 48.8566, 2.3522",
    "git sha 4f2a9c1 and build 20241130.1, semver 1.2.3-rc.4",
]


@pytest.mark.parametrize(("text", "label"), FOUND)
def test_each_built_in_detector_finds_its_format(text, label):
    masked = Redactor(Policy(mode="mask"), b"key").text(text)
    assert f"[{label}]" in masked, masked
    assert masked.count("[") == 1, masked


@pytest.mark.parametrize("text", LEFT_ALONE)
def test_look_alikes_are_left_alone(text):
    assert Redactor(Policy(mode="mask"), b"key").text(text) == text


def test_hash_tokens_are_keyed_and_the_same_for_the_same_value():
    redactor = Redactor(Policy(mode="hash"), b"key")
    first, same, other = (redactor.text(t) for t in ("a@x.io", "A@X.io", "b@x.io"))
    assert first.startswith("[EMAIL:") and first == same and first != other
    assert Redactor(Policy(mode="hash"), b"another key").text("a@x.io") != first


def test_a_policy_is_checked_naming_the_field():
    with pytest.raises(PolicyError) as bad_regex:
        Policy.parse({"mode": "mask", "patterns": {"ORDER": "ORD-(\\d+"}})
    assert bad_regex.value.field == "patterns.ORDER"
    with pytest.raises(PolicyError) as empty:
        Policy.parse({"mode": "mask", "patterns": {"ANY": "x*"}})
    assert "empty" in empty.value.message
    with pytest.raises(PolicyError) as unknown:
        Policy.parse({"mode": "mask", "detectors": ["email", "passport"]})
    assert unknown.value.field == "detectors"


SECRETS = ("jane.doe@example.com", "555-123-4567", "4111 1111 1111 1111", "sk-proj-abcdEFGH1234ijklMNOP5678qrst")
PROMPT = f"I am {SECRETS[0]}, call {SECRETS[1]}; card {SECRETS[2]}; my key {SECRETS[3]}"


def _stored_anywhere(engine: sqlalchemy.Engine, value: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sqlalchemy.text(
            "SELECT count(*) FROM interaction WHERE input_text LIKE :v OR output_text LIKE :v "
            "OR request_json LIKE :v OR response_json LIKE :v"), {"v": f"%{value}%"}).scalar_one()


def _detail(server, engine, interaction_id: int) -> dict:
    headers = {"Authorization": f"Bearer {make_token(engine)}"}
    answer = httpx.get(f"{server.url}/api/v1/interactions/{interaction_id}", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_server_policy_masks_texts_and_raw_json_and_keeps_every_number(engine, settings):
    keys = make_app(engine)
    server = start_server(settings.model_copy(update={"redaction_mode": "mask"}))
    try:
        posted = httpx.post(f"{server.url}/track", timeout=30,
                            json=openai_chat(keys, text=PROMPT, response_id="chatcmpl-keep-me"))
        assert posted.status_code == 201, posted.text
        detail = _detail(server, engine, posted.json()["interaction_id"])
    finally:
        server.stop()
    for secret in SECRETS:
        assert _stored_anywhere(engine, secret) == 0, secret
    assert detail["input_text"].count("[EMAIL]") == 1 and "[PHONE]" in detail["input_text"]
    assert "[CARD]" in detail["output_text"] and "[SECRET]" in detail["output_text"]
    user_message = detail["request"]["messages"][1]
    assert user_message["role"] == "user" and "[EMAIL]" in user_message["content"]
    assert detail["response"]["id"] == "chatcmpl-keep-me" and detail["response"]["model"].startswith("gpt-4o-mini")
    assert (detail["prompt_tokens"], detail["completion_tokens"]) == (21, 31)  # what was sent, not the masks


def test_an_app_of_its_own_hashes_or_drops_bodies_while_others_keep_the_server_policy(engine, settings, tally_cli):
    hashed, dropped, plain = make_app(engine, "hashed"), make_app(engine, "dropped"), make_app(engine, "plain")
    assert tally_cli("apps", "set-redaction", "hashed", "--mode", "hash", "--detect", "email",
                     "--pattern", "ORDER=ORD-\\d+").strip() == "hashed: hash: email, ORDER"
    tally_cli("apps", "set-redaction", "dropped", "--mode", "drop-body")
    server = start_server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ids = [client.post("/track", json=openai_chat(keys, text=f"{email} ORD-77 {SECRETS[1]}")).json()
                   for keys, email in ((hashed, "Jane@Example.com"), (hashed, "jane@example.com"),
                                       (hashed, "joe@example.com"), (dropped, "jane@example.com"),
                                       (plain, "jane@example.com"))]
        first, same, other, empty, kept = (_detail(server, engine, i["interaction_id"]) for i in ids)
    finally:
        server.stop()
    token = first["input_text"].split()[-3]
    assert token.startswith("[EMAIL:") and same["input_text"].split()[-3] == token
    assert other["input_text"].split()[-3] != token
    assert "[ORDER:" in first["input_text"] and SECRETS[1] in first["input_text"]  # phones are not asked for
    assert empty["input_text"] == "" and empty["output_text"] == ""
    assert empty["request"]["messages"][1] == {"role": "user", "content": ""}
    assert empty["response"]["usage"]["total_tokens"] == 52 and empty["prompt_tokens"] == 21
    assert "jane@example.com" in kept["input_text"]  # the server's policy: off
    listed = {row["app"]: row["redaction"] for row in __import__("json").loads(tally_cli("apps", "list", "--json"))}
    assert listed["dropped"]["mode"] == "drop-body" and listed["plain"] is None
    assert tally_cli("apps", "set-redaction", "hashed", "--default").strip() == "hashed: the server policy"


def test_the_admin_api_sets_an_apps_policy_refuses_a_bad_one_and_audits(engine, settings):
    keys = make_app(engine, "alpha")
    server = start_server(settings.model_copy(update={"key_cache_seconds": 0}))
    admin = {"Authorization": f"Bearer {make_token(engine, 'admin')}"}
    try:
        with httpx.Client(base_url=server.url, timeout=30, headers=admin) as client:
            bad = client.put("/api/v1/apps/alpha/redaction", json={"mode": "mask", "patterns": {"ID": "(unclosed"}})
            assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "patterns.ID", bad.text
            assert client.put("/api/v1/apps/nope/redaction", json={"mode": "mask"}).status_code == 404
            assert client.put("/api/v1/apps/alpha/redaction", json={"mode": "lol"}).status_code == 422
            changed = client.put("/api/v1/apps/alpha/redaction", json={"mode": "mask", "detectors": ["email"]})
            assert changed.status_code == 200 and changed.json()["policy"]["detectors"] == ["email"]
            stored = client.post("/track", json=openai_chat(keys, text="me: a@b.io")).json()["interaction_id"]
            assert client.get(f"/api/v1/interactions/{stored}").json()["input_text"].endswith("me: [EMAIL]")
            assert client.delete("/api/v1/apps/alpha/redaction").json()["policy"] is None
            stored = client.post("/track", json=openai_chat(keys, text="me: a@b.io")).json()["interaction_id"]
            assert client.get(f"/api/v1/interactions/{stored}").json()["input_text"].endswith("me: a@b.io")
            actions = [e["action"] for e in client.get("/api/v1/audit").json()["events"]]
            assert actions.count("app.redaction") == 2
    finally:
        server.stop()
