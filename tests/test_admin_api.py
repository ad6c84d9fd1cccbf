"""The admin API: an admin token manages API tokens and dashboard accounts as the commands do, each change audited;
a token of any narrower scope is refused, and what an admin makes works at once (tokens open the API, accounts
log in to the dashboard)."""

import httpx

from tests.conftest import make_app, make_token, wait_until
from tests.dashboard_support import log_in
from tests.payloads import openai_chat

PASSWORD = "a long passphrase"


def _client(server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_only_an_admin_token_manages_tokens_accounts_and_reads_the_audit(live_server, engine):
    for scope in ("read", "export"):
        with _client(live_server, make_token(engine, scope)) as api:
            for method, path in (("GET", "/api/v1/tokens"), ("POST", "/api/v1/tokens"), ("GET", "/api/v1/accounts"),
                                 ("DELETE", "/api/v1/tokens/x"), ("PATCH", "/api/v1/accounts/a@example.com"),
                                 ("GET", "/api/v1/audit")):
                refused = api.request(method, path, json={} if method in ("POST", "PATCH") else None)
                assert refused.status_code == 403, (scope, method, path, refused.text)
    with _client(live_server, make_token(engine, "admin")) as admin:
        assert admin.get("/api/v1/tokens").status_code == 200
        assert admin.get("/api/v1/accounts").json() == {"accounts": []}


def test_an_admin_makes_a_token_limited_to_an_app_and_revokes_it(live_server, engine):
    alpha, beta = make_app(engine, "alpha"), make_app(engine, "beta")
    with _client(live_server, make_token(engine, "admin")) as admin:
        for keys in (alpha, beta):
            assert admin.post("/track", json=openai_chat(keys, text=f"{keys.name} text")).status_code == 201
        made = admin.post("/api/v1/tokens", json={"name": "alpha-bot", "scope": "export", "apps": ["alpha"],
                                                  "expires_in_days": 7})
        assert made.status_code == 201, made.text
        secret = made.json()["token"]
        assert made.json()["apps"] == ["alpha"] and made.json()["scope"] == "export"
        assert secret.startswith(made.json()["prefix"])
        with _client(live_server, secret) as bot:
            assert wait_until(lambda: bot.get("/api/v1/usage/totals").json()["interactions"] == 1)
            found = bot.get("/api/v1/exports/interactions.csv").text
            assert "alpha text" in found and "beta text" not in found
        listed = {token["name"]: token for token in admin.get("/api/v1/tokens").json()["tokens"]}
        assert listed["alpha-bot"]["apps"] == ["alpha"] and "token" not in listed["alpha-bot"]
        for body, field in (({"name": "x", "apps": ["gamma"]}, "apps"),
                            ({"name": "x", "scope": "admin", "apps": ["alpha"]}, "apps"),
                            ({"name": "x", "scope": "owner"}, "scope")):
            refused = admin.post("/api/v1/tokens", json=body)
            assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field, refused.text
        assert admin.delete("/api/v1/tokens/alpha-bot").json() == {"revoked": 1}
        assert admin.delete("/api/v1/tokens/alpha-bot").status_code == 404
        with _client(live_server, secret) as bot:
            assert bot.get("/api/v1/usage/totals").status_code == 401
        trail = admin.get("/api/v1/audit").json()["events"]
        assert [event["action"] for event in trail[:2]] == ["token.revoke", "token.create"]
        assert trail[1]["actor"].startswith("token:tests-admin") and trail[1]["address"] == "127.0.0.1"
        assert secret not in str(trail) and trail[1]["detail"]["apps"] == [1]


def test_an_admin_manages_accounts_that_log_in_at_once(live_server, engine):
    make_app(engine, "alpha")
    with _client(live_server, make_token(engine, "admin")) as admin, \
            httpx.Client(base_url=live_server.url, timeout=30) as browser:
        made = admin.post("/api/v1/accounts", json={"email": "Ana@Example.com", "password": PASSWORD,
                                                    "role": "analyst", "apps": ["alpha"]})
        assert made.status_code == 201, made.text
        assert made.json() | {"created_at": 0} == {"email": "ana@example.com", "role": "analyst", "apps": ["alpha"],
                                                   "created_at": 0, "disabled_at": None}
        assert admin.post("/api/v1/accounts", json={"email": "ana@example.com", "password": PASSWORD}
                          ).json()["errors"][0]["field"] == "email"
        assert admin.post("/api/v1/accounts", json={"email": "b@example.com", "password": "short"}).status_code == 422
        assert log_in(browser, "ana@example.com", PASSWORD).status_code == 303
        assert browser.get("/dashboard/exports/users.csv").status_code == 200
        changed = admin.patch("/api/v1/accounts/ana@example.com", json={"role": "viewer"})
        assert changed.json()["role"] == "viewer" and changed.json()["apps"] == ["alpha"]  # apps unchanged
        assert browser.get("/dashboard/exports/users.csv").status_code == 403
        assert admin.patch("/api/v1/accounts/ana@example.com", json={"role": "admin"}
                           ).json()["errors"][0]["field"] == "apps"  # an admin sees every app
        assert admin.patch("/api/v1/accounts/ana@example.com", json={"apps": []}).json()["apps"] is None
        disabled = admin.patch("/api/v1/accounts/ana@example.com", json={"disabled": True})
        assert disabled.json()["disabled_at"] is not None
        assert browser.get("/dashboard", follow_redirects=False).status_code == 303  # logged out
        assert admin.delete("/api/v1/accounts/ana@example.com").status_code == 204
        assert admin.delete("/api/v1/accounts/ana@example.com").status_code == 404
        assert admin.patch("/api/v1/accounts/nobody", json={"role": "viewer"}).status_code == 404
        actions = [event["action"] for event in admin.get("/api/v1/audit").json()["events"]
                   if event["action"].startswith("account.")]
        assert actions == ["account.delete", "account.disable", "account.role", "account.role", "account.create"]
