"""CSV exports read back with Python's csv module equal what the JSON read API returns for the same filters."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tally.exports import datasets as export_datasets
from tests.conftest import make_app, start_server
from tests.payloads import openai_chat

BASE = 1_717_000_000_000  # 2024-05-29T16:26:40Z
MINUTE = 60_000
WINDOW = {"from": "2024-05-01", "to": "2024-06-30"}
NASTY = [
    'Hello, "world"\nsecond line 🎉', '=HYPERLINK("http://evil.example","click")', "+1 234", "-2+3",
    "@SUM(A1:A2)", "\tindented", "\rcarriage return", "line one\r\nline two", 'a "quoted" word', "ünïcödé 中文 🙂",
    "=", "plain",
]
TIMES = {"request_at", "response_at", "received_at", "started_at", "ended_at", "first_seen", "last_seen"}
HEADERS = {
    "interactions": "id,request_at,response_at,app_id,user_id,session_id,provider,type,model,input_text,output_text,"
                    "prompt_tokens,cached_prompt_tokens,completion_tokens,total_tokens,usage_source,cost,priced,"
                    "finish_reason,latency_ms,image_count,is_error,response_ref,client_version,received_at,malformed",
    "sessions": "id,app_id,session,user_id,user_external_id,user_email,started_at,ended_at,duration_ms,turns,errors,"
                "total_tokens,cost,models,unpriced",
    "users": "id,app_id,user_id,email,first_name,last_name,is_authenticated,first_seen,last_seen,sessions,"
             "interactions,total_tokens,cost,unpriced",
    "daily_usage": "day,app_id,provider,model,interactions,errors,prompt_tokens,completion_tokens,reported_tokens,"
                   "estimated_tokens,absent_usage,cost,estimated_cost,priced,unpriced",
}


@pytest.fixture
def server(engine, settings, monkeypatch):
    monkeypatch.setattr(export_datasets, "PAGE_ROWS", 3)  # many pages, and keyset cursors across equal times
    monkeypatch.setattr(export_datasets, "RAW_SLICE_ROWS", 2)
    server = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2}))
    yield server
    server.stop()


@pytest.fixture
def api(server, read_token):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {read_token}"}, timeout=30) as http:
        yield http


def _seed(api, engine, app_keys) -> dict:
    """Two apps, users and sessions whose every text is hostile, a priced and an unpriced model, estimated usage,
    an error, and interactions sharing one request time."""
    other = make_app(engine, "other app")
    hostile = {"userId": "=cmd|' /C calc'!A0", "email": "+x@example.com", "firstName": "-Bob",
               "lastName": 'O"Neil, Jr.'}
    payloads = []
    for index, text in enumerate(NASTY):
        keys = other if index % 4 == 3 else app_keys
        user = hostile if index % 2 else {"userId": "ann", "firstName": "Ann 🙂"}
        payload = openai_chat(keys, user=user, text=text, at_ms=BASE + (index // 3) * MINUTE,
                              session="-s,1\"" if index % 3 == 0 else "", usage=index % 5 != 1,
                              model="@cf/meta/llama-3" if index % 6 == 5 else "gpt-4o-mini-2024-07-18")
        payload["response"]["choices"][0]["message"]["content"] = NASTY[-1 - index]
        payloads.append(payload)
    payloads[4]["response"]["error"] = {"message": "overloaded"}
    payloads.append(openai_chat(app_keys, user={"userId": "ann"}, at_ms=BASE + 26 * 60 * MINUTE))
    for payload in payloads:
        assert api.post("/track", json=payload).status_code == 201
    _wait_for(api, len(payloads))
    users = {u["user_id"]: u["id"] for u in api.get("/api/v1/users").json()["items"]}
    return {"other_app": 2, "ann": users["ann"], "model": "@cf/meta/llama-3"}


def _wait_for(api, count: int) -> None:
    import time

    deadline = time.monotonic() + 20
    while api.get("/api/v1/usage/totals", params=WINDOW).json()["interactions"] != count:
        assert time.monotonic() < deadline, "the analytics did not catch up"
        time.sleep(0.05)


def _csv(api, dataset: str, params: dict) -> tuple[list[str], list[list[str]]]:
    answer = api.get(f"/api/v1/exports/{dataset}.csv", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    body = answer.content
    assert not body.startswith(b"\xef\xbb\xbf") and body.endswith(b"\r\n")
    header, *rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    return header, rows


def _cell(name: str, value) -> str:
    """A JSON value as the README says the CSV writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if name in TIMES:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value % 1000:03d}Z"
    if name == "malformed":  # the detail's list of notes, as one cell
        return "; ".join(f"{note['field']}: {note['message']}" for note in value or [])
    if isinstance(value, str):
        return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
    return str(value)


def _same(header: list[str], rows: list[list[str]], expected: list[dict]) -> None:
    assert len(rows) == len(expected)
    for row, item in zip(rows, expected):
        for name, cell in zip(header, row):
            value = item[name]
            if isinstance(value, float):  # a cost: exact decimals in the CSV, floats in JSON
                assert float(cell) == value, name
            else:
                assert cell == _cell(name, value), (name, cell, value)


def _pages(api, path: str, params: dict) -> list[dict]:
    items, cursor = [], None
    while True:
        page = api.get(path, params={**params, "limit": 500, **({"cursor": cursor} if cursor else {})}).json()
        items += page["items"]
        if not (cursor := page["next_cursor"]):
            return items


def _expected(api, dataset: str, params: dict) -> list[dict]:
    if dataset == "interactions":
        listed = sorted(_pages(api, "/api/v1/interactions", params), key=lambda i: (i["request_at"], i["id"]))
        return [{**item, **api.get(f"/api/v1/interactions/{item['id']}").json()} for item in listed]
    if dataset == "sessions":
        return sorted(_pages(api, "/api/v1/sessions", params), key=lambda s: (s["started_at"], s["id"]))
    if dataset == "users":
        return sorted(_pages(api, "/api/v1/users", params), key=lambda u: u["id"])
    rows = []
    for app in [int(params["app"])] if "app" in params else [1, 2]:
        models = api.get("/api/v1/usage/models", params={**params, "app": app}).json()["models"]
        for m in models:
            query = {**params, "app": app, "provider": m["provider"], "model": m["model"], "granularity": "day"}
            for bucket in api.get("/api/v1/usage", params=query).json()["series"]:
                rows.append({**bucket, "day": bucket["bucket"][:10], "app_id": app, "provider": m["provider"],
                             "model": m["model"]})
    return sorted(rows, key=lambda r: (r["day"], r["app_id"], r["provider"], r["model"]))


@pytest.mark.parametrize("dataset", list(HEADERS))
def test_every_dataset_reads_back_as_the_json_api(api, engine, app_keys, dataset):
    ids = _seed(api, engine, app_keys)
    for filters in ({}, {"app": ids["other_app"]}, {"user": ids["ann"]}, {"model": ids["model"]},
                    {"from": "2024-05-29T16:27:00Z", "to": "2024-05-29T16:29:00Z"}):
        params = {**WINDOW, **filters}
        header, rows = _csv(api, dataset, params)
        assert header == HEADERS[dataset].split(",")
        expected = _expected(api, dataset, params)
        assert expected, (dataset, filters)
        _same(header, rows, expected)


def test_hostile_text_is_quoted_and_defused(api, engine, app_keys):
    _seed(api, engine, app_keys)
    body = api.get("/api/v1/exports/interactions.csv", params=WINDOW).content
    assert b'"Hello, ""world""\nsecond line \xf0\x9f\x8e\x89"' in body  # RFC 4180: doubled quotes, raw newline
    for cell in (b""","'=HYPERLINK(""http://evil.example"",""click"")",""", b",'+1 234,", b",'-2+3,",
                 b",'@SUM(A1:A2),", b",\"'\rcarriage return\",", b",'\tindented,"):
        assert cell in body, cell
    assert body.count(b"\r\n") > body.count(b"\n") // 2  # rows end in CRLF; the lone LFs are inside texts
    [_, *rows] = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert all(row[16] == "" or float(row[16]) >= 0 for row in rows)  # a cost is a number, never prefixed


@pytest.mark.parametrize("start", ["\uff1d", "\uff0b", "\uff0d", "\uff20"])  # full-width = + - @
def test_full_width_formula_starts_are_defused_too(api, app_keys, start):
    text = f"{start}HYPERLINK(\"http://evil.example\")"
    payload = openai_chat(app_keys, user={"userId": f"{start}1", "firstName": start}, text=text, at_ms=BASE)
    payload["response"]["choices"][0]["message"]["content"] = text
    assert api.post("/track", json=payload).status_code == 201
    _wait_for(api, 1)
    [interaction] = _csv(api, "interactions", WINDOW)[1]
    assert interaction[9] == interaction[10] == "'" + text
    [user] = _csv(api, "users", WINDOW)[1]
    assert (user[2], user[4]) == (f"'{start}1", f"'{start}")


def test_raw_json_only_on_request(api, engine, app_keys):
    _seed(api, engine, app_keys)
    header, rows = _csv(api, "interactions", {**WINDOW, "include_raw": "true"})
    assert header[-2:] == ["request_json", "response_json"]
    detail = api.get(f"/api/v1/interactions/{rows[0][0]}").json()
    assert json.loads(rows[0][-2]) == detail["request"] and json.loads(rows[0][-1]) == detail["response"]


def test_an_empty_range_is_a_header_alone(api):
    answer = api.get("/api/v1/exports/sessions.csv", params={"from": "2001-01-01", "to": "2001-01-02"})
    assert answer.content == (HEADERS["sessions"] + "\r\n").encode()
    assert 'filename="sessions_2001-01-01_2001-01-02.csv"' in answer.headers["content-disposition"]


def test_a_download_is_named_after_the_local_days_asked_for(engine, settings, read_token):
    server = start_server(settings.model_copy(update={"analytics_timezone": "Pacific/Kiritimati"}))  # UTC+14
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {read_token}"}) as api:
            answer = api.get("/api/v1/exports/users.csv", params={"from": "2001-01-01", "to": "2001-01-02"})
    finally:
        server.stop()
    assert 'filename="users_2001-01-01_2001-01-02.csv"' in answer.headers["content-disposition"]


@pytest.mark.parametrize("path, params, status, field", [
    ("/api/v1/exports/nope.csv", {}, 404, "dataset"),
    ("/api/v1/exports/sessions.csv", {"include_raw": "true"}, 400, "include_raw"),
    ("/api/v1/exports/users.csv", {"include_raw": "true"}, 400, "include_raw"),
    ("/api/v1/exports/interactions.csv", {"from": "yesterday"}, 400, "from"),
    ("/api/v1/exports/interactions.csv", {"from": "2024-06-02", "to": "2024-06-01"}, 400, "from"),
    ("/api/v1/exports/daily_usage.csv", {"user": "ann"}, 400, "user"),
])
def test_bad_requests_name_the_parameter(api, path, params, status, field):
    answer = api.get(path, params=params)
    assert answer.status_code == status, answer.text
    assert field in {error["field"] for error in answer.json()["errors"]}


def test_a_read_token_is_required(server):
    assert httpx.get(f"{server.url}/api/v1/exports/users.csv").status_code == 401


def test_a_malformed_response_is_named_in_its_row(api, app_keys):
    payload = openai_chat(app_keys, at_ms=BASE)
    payload["response"]["choices"] = "oops"
    assert api.post("/track", json=payload).status_code == 201
    _wait_for(api, 1)
    header, [row] = _csv(api, "interactions", WINDOW)
    assert row[header.index("malformed")] == "response.choices: must be an array"
    assert api.get("/api/v1/interactions", params=WINDOW).json()["items"][0]["malformed"] is True
