"""Erasing a person: after `POST /api/v1/erasures` (or `tally erase`) nothing of them is left in any table, in
any file under the data directory (the SQLite and DuckDB files and their logs included) or in any answer, while
everyone else's data stays; the export files written earlier that held them are listed; the audit log keeps a
receipt without personal data; erasing again finds nothing."""

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import sqlalchemy

from tally.analytics.service import Analytics
from tally.exports.periods import last_period
from tally.exports.runs import run_period
from tally.exports.schedules import add_schedule
from tally.store.models import SQLModel
from tests.conftest import make_app, make_token, start_server, wait_until
from tests.payloads import openai_chat

USER_ID, EMAIL, NAME, WORD = "victim-7431", "Victim.Person@Example.org", "Zebulon", "quixotrellis"
TRACES = (USER_ID, EMAIL.lower(), NAME.lower(), WORD)
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
                       "RU5ErkJggg==")
HOUR_MS = 3_600_000


def _post_everyone(url: str, keys, day_ms: int) -> None:
    victim = {"userId": USER_ID, "email": EMAIL, "firstName": NAME}
    image = f"{WORD}-1700000000-0.png"
    with httpx.Client(base_url=url, timeout=30) as client:
        for payload in (
            openai_chat(keys, user=victim, session="shared-1", text=f"my {WORD} plan", at_ms=day_ms + HOUR_MS),
            openai_chat(keys, user={"userId": "bystander"}, session="shared-1", text="hello", at_ms=day_ms + HOUR_MS),
            openai_chat(keys, user={"userId": USER_ID}, text=f"more {WORD}", at_ms=day_ms + 2 * HOUR_MS),
            openai_chat(keys, user={"userId": "bystander"}, text="alone", at_ms=day_ms + 3 * HOUR_MS),
            {"reconify": {"format": "openai", "type": "image", "version": "3.0.0", "appKey": keys.app_key,
                          "apiKey": keys.api_key},
             "request": {"model": "dall-e-3", "prompt": f"a {WORD}", "response_format": "b64_json"},
             "response": {"created": 1700000000, "data": [image]}, "user": {"userId": USER_ID}, "session": "",
             "sessionTimeout": "", "timestamps": {"request": day_ms + 4 * HOUR_MS}},
        ):
            assert client.post("/track", json=payload).status_code == 201
        upload = {"reconify": {"format": "openai", "type": "image_upload", "appKey": keys.app_key,
                               "apiKey": keys.api_key},
                  "upload": {"filename": image, "data": {"b64_json": base64.b64encode(PNG).decode()}}}
        assert client.post("/upload", json=upload).status_code == 201


def _export_the_day(engine, settings, day_ms: int) -> str:
    """A real nightly export of that day's interactions, written before the erasure (the server is stopped)."""
    with sqlalchemy.orm.Session(engine) as db:
        schedule = add_schedule(db, dataset="interactions", cron="0 2 * * *", timezone_name="UTC", app_id=1,
                                exports_dir=settings.exports_folder, now_ms=day_ms, actor="tests", apps=None)
        db.commit()
        schedule_id = schedule.id
    analytics = Analytics(settings)
    try:
        analytics.refresh()
        period = last_period("day", ZoneInfo("UTC"), datetime.fromtimestamp(day_ms / 1000 + 86_400 + 7200, UTC))
        run = run_period(engine, analytics, schedule_id=schedule_id, period=period, replica="tests")
    finally:
        analytics.close()
    assert run is not None and run["status"] == "succeeded" and run["rows"] == 5, run
    return run["file"]


def _rows_holding(engine, traces) -> list[str]:
    """Every table's rows, as text, that hold one of `traces` (lower-cased)."""
    found = []
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in conn.execute(sqlalchemy.select(table)):
                text = " ".join(str(value) for value in row).lower()
                found += [f"{table.name}: {trace}" for trace in traces if trace in text]
    return found


def _files_holding(data_dir: Path, exports: Path, traces) -> list[str]:
    found = []
    for path in data_dir.rglob("*"):
        if path.is_file() and exports not in path.parents:
            content = path.read_bytes().lower()
            found += [f"{path.name}: {trace}" for trace in traces if trace.encode() in content]
    return found


def test_an_erased_person_leaves_no_trace_and_everyone_else_stays(engine, settings):
    keys = make_app(engine)
    admin = {"Authorization": f"Bearer {make_token(engine, 'admin')}"}
    day_ms = (int(time.time() * 1000) // 86_400_000 - 2) * 86_400_000
    server = start_server(settings)
    try:
        _post_everyone(server.url, keys, day_ms)
    finally:
        server.stop()
    export_file = _export_the_day(engine, settings, day_ms)
    assert _rows_holding(engine, TRACES) and _files_holding(settings.data_dir, settings.exports_folder, TRACES)

    server = start_server(settings)
    try:
        with httpx.Client(base_url=server.url, timeout=60, headers=admin) as api:
            wait_until(lambda: api.get("/api/v1/users", params={"search": USER_ID}).json()["items"])
            receipt = api.post("/api/v1/erasures", json={"app": "test-app", "user_id": USER_ID})
            assert receipt.status_code == 200, receipt.text
            assert receipt.json() == {"erasure": 1, "users": 1, "interactions": 3, "sessions": 2, "images": 1,
                                      "export_files": [export_file], "analytics": "removed"}
            # At once, in every answer: no user by id, email or name, no interaction, the shared session kept.
            for search in (USER_ID, EMAIL, NAME):
                assert api.get("/api/v1/users", params={"search": search}).json()["items"] == []
            interactions = api.get("/api/v1/interactions").json()["items"]
            assert len(interactions) == 2 and WORD not in json.dumps(interactions)
            sessions = api.get("/api/v1/sessions").json()["items"]
            assert len(sessions) == 2 and {s["turns"] for s in sessions} == {1}, sessions
            totals = api.get("/api/v1/usage/totals", params={"from": day_ms, "to": day_ms + 86_400_000}).json()
            assert totals["interactions"] == 2, totals  # the day's totals drop by the person's share
            again = api.post("/api/v1/erasures", json={"app": "test-app", "email": EMAIL})
            assert again.status_code == 200 and again.json()["users"] == again.json()["interactions"] == 0
            receipts = [e for e in api.get("/api/v1/audit").json()["events"] if e["action"] == "person.erase"]
            assert [r["detail"]["interactions"] for r in receipts] == [0, 3]
            assert not any(trace in json.dumps(receipts).lower() for trace in TRACES)
            assert api.post("/api/v1/erasures", json={"app": "test-app"}).status_code == 422
    finally:
        server.stop()
    assert _rows_holding(engine, TRACES) == []
    assert _files_holding(settings.data_dir, settings.exports_folder, TRACES) == []
    assert _rows_holding(engine, ("bystander", "alone"))  # everyone else stays
    assert WORD in Path(export_file).read_text()  # listed, not changed


def test_tally_erase_on_the_command_line(engine, settings, tally_cli):
    keys = make_app(engine)
    day_ms = (int(time.time() * 1000) // 86_400_000 - 1) * 86_400_000
    server = start_server(settings)
    try:
        _post_everyone(server.url, keys, day_ms)
    finally:
        server.stop()
    printed = json.loads(tally_cli("erase", "test-app", "--email", EMAIL.upper(), "--json"))
    assert (printed["users"], printed["interactions"], printed["images"], printed["analytics"]) == (1, 3, 1,
                                                                                                   "removed")
    assert _rows_holding(engine, TRACES) == []
    assert _files_holding(settings.data_dir, settings.exports_folder, TRACES) == []
    assert "0 users, 0 interactions" in tally_cli("erase", "test-app", "--user-id", USER_ID)
    assert "give --user-id or --email" in tally_cli("erase", "test-app", code=2)
