"""A token limited to one app sees that app's data and nothing of any other, in every operation of /openapi.json:
the walk below fails when an operation is added that it does not check. Its answers are compared with what an
unlimited token gets when it asks for that app alone, so "nothing else" is checked in the numbers too."""

import base64
import json
import time

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import make_app, make_token, start_server
from tests.dashboard_support import csrf_of, log_in
from tests.payloads import openai_chat

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
                       "RU5ErkJggg==")
HOUR_MS = 3_600_000
NO_SUCH_ID = 999_999_999
PASSWORD = "a long passphrase"


def _client(server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _post_app_data(api: httpx.Client, keys, name: str) -> None:
    """An interaction of a named user in a named session, and an uploaded image, every text holding `name`."""
    upload = {"reconify": {"format": "openai", "type": "image_upload", "appKey": keys.app_key,
                           "apiKey": keys.api_key},
              "upload": {"filename": f"{name}.png", "data": {"b64_json": base64.b64encode(PNG).decode()}}}
    assert api.post("/upload", json=upload).status_code == 201
    user = {"userId": f"{name}-user", "email": f"someone@{name}.example", "firstName": name.title()}
    payload = openai_chat(keys, user=user, session=f"{name}-session", text=f"{name} secret plans",
                          at_ms=int(time.time() * 1000) - HOUR_MS, model=f"{name}-model")
    assert api.post("/track", json=payload).status_code == 201


def _ids(engine, table: str, app_id: int) -> list[int]:
    with engine.connect() as conn:
        found = conn.execute(text(f"SELECT id FROM {table} WHERE app_id = :a ORDER BY id"), {"a": app_id})
        return list(found.scalars())


def _app_id(engine, name: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT id FROM app WHERE name = :n"), {"n": name}).scalar_one()


def _answer(response: httpx.Response):
    """The answer without its freshness (how long ago the analytics caught up changes between two calls)."""
    assert response.status_code == 200, (response.request.url, response.text)
    if response.headers["content-type"].startswith("text/csv"):
        return response.text
    body = response.json()
    if isinstance(body, dict):
        body.pop("freshness", None)
        body.pop("counted_at", None)  # when the budgets were last counted: it moves on between two calls
    return body


@pytest.fixture
def world(engine, settings, tally_cli):
    """Two apps, alpha and beta, with data and a schedule each; a server; the walker token (alpha only, export
    scope) made by the real command, and an unlimited export token, the oracle."""
    alpha_keys, beta_keys = make_app(engine, "alpha"), make_app(engine, "beta")
    server = start_server(settings.model_copy(update={"analytics_refresh_seconds": 0.2,
                                                      "export_sync_seconds": 0.2}))
    try:
        oracle_token = make_token(engine, "export")
        walker_token = tally_cli("tokens", "create", "walker", "--app", "alpha", "--scope", "export").strip()
        with _client(server, oracle_token) as oracle, _client(server, walker_token) as walker:
            _post_app_data(oracle, alpha_keys, "alpha")
            _post_app_data(oracle, beta_keys, "beta")
            alpha, beta = _app_id(engine, "alpha"), _app_id(engine, "beta")
            deadline = time.monotonic() + 30
            while oracle.get("/api/v1/usage/totals").json()["interactions"] < 2:
                assert time.monotonic() < deadline, "the analytics did not catch up"
                time.sleep(0.1)
            schedules, budgets = {}, {}
            for name, app_id in (("alpha", alpha), ("beta", beta)):
                created = oracle.post("/api/v1/exports/schedules",
                                      json={"dataset": "interactions", "cron": "0 3 * * *", "app": app_id})
                assert created.status_code == 201, created.text
                schedules[name] = created.json()["id"]
                budget = oracle.post("/api/v1/budgets", json={"app": name, "metric": "tokens", "limit": 10**6,
                                                              "period": "month", "per_user": True})
                assert budget.status_code == 201, budget.text
                budgets[name] = budget.json()["id"]
            for name in ("alpha", "beta"):
                tally_cli("alerts", "add", "silence", "--app", name, "--webhook", "http://127.0.0.1:9/hook")
            with engine.begin() as conn:  # both come due: the server runs them
                conn.execute(text("UPDATE export_schedule SET next_run_at = :t"), {"t": int(time.time() * 1000) - 1})
            while len([r for r in oracle.get("/api/v1/exports/runs").json()["runs"] if r["status"] != "running"]) < 2:
                assert time.monotonic() < deadline + 30, "the scheduled exports did not run"
                time.sleep(0.1)
            yield {"server": server, "oracle": oracle, "walker": walker, "apps": {"alpha": alpha, "beta": beta},
                   "schedules": schedules, "budgets": budgets, "engine": engine}
    finally:
        server.stop()


def test_a_token_limited_to_one_app_sees_nothing_of_another_in_any_operation(world):
    oracle, walker, apps, engine = world["oracle"], world["walker"], world["apps"], world["engine"]
    alpha, beta = apps["alpha"], apps["beta"]
    spec = oracle.get("/openapi.json").json()
    tables = {"interaction_id": "interaction", "user_id": "end_user", "session_id": "interaction_session",
              "image_id": "interaction_image"}
    beta_user = _ids(engine, "end_user", beta)[0]
    beta_session = _ids(engine, "interaction_session", beta)[0]
    checked = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            names = {parameter["name"] for parameter in operation.get("parameters", [])}
            seen = []  # every answer the walker got, searched for beta below
            if operation.get("security") == []:  # an app's own keys authenticate it (the budget check), not tokens
                refused = walker.request(method, path)
                seen.append(refused)
                assert refused.status_code == 401, label
            elif "admin" in operation.get("tags", []):  # tokens, accounts, the audit trail: never for a limited token
                refused = walker.request(method, path.replace("{", "").replace("}", ""),
                                         json={} if method in ("post", "patch") else None)
                seen.append(refused)
                assert refused.status_code == 403 and "needs 'admin'" in refused.json()["message"], label
            elif method == "get" and "{" not in path:
                mine = walker.get(path)
                seen.append(mine)
                if "app" in names:
                    # What the walker sees is exactly what an unlimited token sees of alpha alone.
                    assert _answer(mine) == _answer(oracle.get(path, params={"app": alpha})), label
                    # Asking for beta, or for beta's user or session, shows nothing: as for an app that is not.
                    nothing = _answer(oracle.get(path, params={"app": NO_SUCH_ID}))
                    for asked in ({"app": beta}, {"user": beta_user} if "user" in names else None,
                                  {"session": beta_session} if "session" in names else None):
                        if asked:
                            refused = walker.get(path, params=asked)
                            seen.append(refused)
                            expected = nothing if "app" in asked else _answer(
                                oracle.get(path, params={"app": alpha, **asked}))
                            assert _answer(refused) == expected, (label, asked)
                elif path == "/api/v1/exports/schedules":
                    assert [s["id"] for s in mine.json()["schedules"]] == [world["schedules"]["alpha"]], label
                elif path == "/api/v1/exports/runs":
                    runs = mine.json()["runs"]
                    assert runs and {r["schedule_id"] for r in runs} == {world["schedules"]["alpha"]}, label
                elif path != "/api/v1/analytics/status":
                    pytest.fail(f"{label}: the walk does not know how to check this operation")
            elif method == "get" and path == "/api/v1/exports/{dataset}.csv":
                for dataset in ("interactions", "sessions", "users", "daily_usage"):
                    mine = walker.get(f"/api/v1/exports/{dataset}.csv")
                    seen += [mine, walker.get(f"/api/v1/exports/{dataset}.csv", params={"app": beta})]
                    assert _answer(mine) == _answer(oracle.get(f"/api/v1/exports/{dataset}.csv",
                                                               params={"app": alpha})), (label, dataset)
                raw = walker.get("/api/v1/exports/interactions.csv", params={"include_raw": "true"})
                seen.append(raw)
                assert "alpha secret plans" in raw.text
            elif method == "get" and "{" in path:
                parameter = path[path.index("{") + 1:path.index("}")]
                if parameter == "schedule_id":
                    their, own = world["schedules"]["beta"], world["schedules"]["alpha"]
                else:
                    their, own = _ids(engine, tables[parameter], beta)[0], _ids(engine, tables[parameter], alpha)[0]
                url = path.replace("{" + parameter + "}", "{}")
                refused = walker.get(url.format(their))
                seen.append(refused)
                assert refused.status_code == 404, (label, refused.text)
                assert refused.json()["error"] == "not_found", label
                assert oracle.get(url.format(their)).status_code == 200, label  # it is there: the walker may not see it
                allowed = walker.get(url.format(own))
                seen.append(allowed)
                assert allowed.status_code == 200, (label, allowed.text)
            elif method == "post" and path == "/api/v1/exports/schedules":
                for body, field in (({"app": beta}, "app"), ({}, "app")):
                    refused = walker.post(path, json={"dataset": "users", "cron": "0 4 * * *", **body})
                    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field, refused.text
                created = walker.post(path, json={"dataset": "users", "cron": "0 4 * * *", "app": alpha})
                assert created.status_code == 201, created.text
                assert walker.delete(f"/api/v1/exports/schedules/{created.json()['id']}").status_code == 204
            elif method == "post" and path == "/api/v1/budgets":
                budget = {"metric": "cost", "limit": 5, "period": "day"}
                refused = walker.post(path, json={**budget, "app": "beta"})
                assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "app", refused.text
                created = walker.post(path, json={**budget, "app": "alpha"})
                assert created.status_code == 201, created.text
                assert walker.delete(f"{path}/{created.json()['id']}").status_code == 204
            elif method == "delete" and path == "/api/v1/exports/schedules/{schedule_id}":
                their = world["schedules"]["beta"]
                assert walker.delete(path.format(schedule_id=their)).status_code == 404, label
                assert oracle.get(f"/api/v1/exports/schedules/{their}").status_code == 200, label
            elif method == "delete" and path == "/api/v1/budgets/{budget_id}":
                their = world["budgets"]["beta"]
                assert walker.delete(path.format(budget_id=their)).status_code == 404, label
                assert their in [b["id"] for b in oracle.get("/api/v1/budgets").json()["budgets"]], label
            else:
                pytest.fail(f"{label}: the walk does not know how to check this operation")
            for answer in seen:
                body = answer.content.lower()
                assert b"beta" not in body, (label, str(answer.request.url), answer.text[:300])
            checked.append(label)
    assert len(checked) == sum(len(operations) for operations in spec["paths"].values()) >= 20, checked
    interactions = walker.get("/api/v1/interactions").json()["items"]
    assert [item["app_id"] for item in interactions] == [alpha]  # the walker does see its own app


def test_the_walker_token_is_listed_with_its_app_and_admin_tokens_cannot_be_limited(world, tally_cli):
    listed = {token["name"]: token for token in json.loads(tally_cli("tokens", "list", "--json"))}
    assert listed["walker"]["apps"] == ["alpha"] and listed["tests-export"]["apps"] is None
    assert "walker" in tally_cli("tokens", "list") and "alpha" in tally_cli("tokens", "list")
    refused = tally_cli("tokens", "create", "boss", "--app", "alpha", "--scope", "admin", code=1)
    assert "cannot be limited" in refused
    assert "no app is named 'gamma'" in tally_cli("tokens", "create", "lost", "--app", "gamma", code=1)


def test_an_account_limited_to_one_app_sees_nothing_of_another_on_any_page(world, tally_cli):
    from tally.dashboard import alert_routes, budget_routes, export_routes, routes

    tally_cli("users", "create", "ana@example.com", "--role", "analyst", "--app", "alpha", "--password-stdin",
              stdin=f"{PASSWORD}\n")
    engine, apps, schedules = world["engine"], world["apps"], world["schedules"]
    tables = {"user_id": "end_user", "session_id": "interaction_session", "interaction_id": "interaction",
              "image_id": "interaction_image"}
    with httpx.Client(base_url=world["server"].url, timeout=60) as browser:
        assert log_in(browser, "ana@example.com", PASSWORD).status_code == 303
        seen, checked = [], 0
        for route in [*routes.router.routes, *export_routes.router.routes, *budget_routes.router.routes,
                      *alert_routes.router.routes]:
            path, methods = route.path, route.methods
            if "GET" not in methods or path.startswith("/dashboard/static/"):
                continue
            checked += 1
            if path == "/dashboard/exports/{dataset}.csv":
                for dataset in ("interactions", "sessions", "users", "daily_usage"):
                    for query in ({}, {"app": apps["beta"]}):
                        seen.append(browser.get(f"/dashboard/exports/{dataset}.csv", params=query))
                        assert seen[-1].status_code == 200, seen[-1].text
                assert "alpha secret plans" in browser.get("/dashboard/exports/interactions.csv").text
            elif "{" in path:
                parameter = path[path.index("{") + 1:path.index("}")]
                their, own = (_ids(engine, tables[parameter], apps[name])[0] for name in ("beta", "alpha"))
                url = path.replace("{" + parameter + "}", "{}")
                seen.append(browser.get(url.format(their)))
                assert seen[-1].status_code == 404, (path, seen[-1].text[:200])
                seen.append(browser.get(url.format(own)))
                assert seen[-1].status_code == 200, (path, seen[-1].text[:200])
            else:
                for query in ({}, {"app": apps["beta"]}, {"range": "90d"}):
                    seen.append(browser.get(path, params=query))
                    assert seen[-1].status_code == 200, (path, query, seen[-1].text[:200])
        assert checked >= 10
        for answer in seen:
            assert b"beta" not in answer.content.lower(), (str(answer.request.url), answer.text[:300])
        assert "alpha secret plans" in browser.get("/dashboard/interactions").text
        exports = browser.get("/dashboard/exports").text
        assert f"/dashboard/exports/schedules/{schedules['alpha']}/remove" in exports
        csrf = csrf_of(exports)
        refused = browser.post("/dashboard/exports/schedules", data={
            "csrf": csrf, "dataset": "users", "cron": "0 5 * * *", "timezone": "UTC", "app": str(apps["beta"])})
        assert refused.status_code == 422 and "no app with id" in refused.text
        browser.post(f"/dashboard/exports/schedules/{schedules['beta']}/remove", data={"csrf": csrf})
    assert world["oracle"].get(f"/api/v1/exports/schedules/{schedules['beta']}").status_code == 200
