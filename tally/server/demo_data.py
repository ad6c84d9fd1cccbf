"""Synthetic but realistic traffic for `tally demo`, stored through the real ingest path (validate, check keys,
normalise, resolve users and sessions), so every number the dashboard derives from it is computed for real."""

import math
import random
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, select

from tally.ingest.batch import store_batch
from tally.ingest.keys import VerifiedApp, add_api_key, create_app
from tally.ingest.prepare import prepare
from tally.ingest.service import parse_payload
from tally.store.engine import writing
from tally.store.models import App, id_of
from tally.store.settings import Settings

QUESTIONS = ["How do I reset my password?", "Summarise this contract clause in plain words.",
             "Write a haiku about autumn.", "Why does my build fail with a missing module?",
             "Translate 'good morning' into French.", "What is the refund policy for e-books?",
             "Draft a polite reminder about an unpaid invoice.", "Explain recursion to a ten-year-old."]
ANSWER = "Here is what I found: " + "the answer depends on a few details, so let me walk you through them. " * 3
# (format, model, share of traffic, median latency ms); house-llm is deliberately absent from the price table
MODELS = [("openai", "gpt-4o-mini-2024-07-18", 30, 900), ("openai", "gpt-4o-2024-08-06", 10, 2200),
          ("anthropic", "claude-3-5-sonnet-20241022", 12, 2600), ("anthropic", "claude-3-haiku-20240307", 10, 800),
          ("bedrock", "meta.llama3-8b-instruct-v1:0", 8, 700), ("cohere", "command-r", 8, 1200),
          ("mistral", "mistral-large-latest", 8, 1800), ("universal", "house-llm-7b", 14, 500)]
APPS = ["support-bot", "code-assistant", "marketing-writer"]


@dataclass
class DemoApp:
    app_id: int
    app_key: str
    api_key: str


def load_demo(engine: Engine, settings: Settings, *, interactions: int, days: int = 30, seed: int = 7) -> int:
    """Store `interactions` synthetic interactions over the last `days` days; returns how many were stored (a
    generated response id that repeats one already stored is a retry, and is not stored again)."""
    rng = random.Random(seed)
    apps = _demo_apps(engine)
    verified = {app.app_key: VerifiedApp(app.app_id, None) for app in apps}
    now = int(time.time() * 1000)
    payloads = list(_traffic(rng, apps, interactions, now - days * 86_400_000, now))
    payloads.sort(key=lambda p: p["timestamps"]["request"])
    stored = 0
    for start in range(0, len(payloads), 500):
        jobs = []
        for body in payloads[start:start + 500]:
            payload = parse_payload(body)
            jobs.append(prepare(payload, app=verified[payload.reconify.appKey], received_at=int(time.time() * 1000),
                                default_timeout_minutes=settings.default_session_timeout_minutes))
        with writing(engine).begin() as conn:
            stored += sum(1 for result in store_batch(conn, jobs) if not result.duplicate)
    return stored


def _demo_apps(engine: Engine) -> list[DemoApp]:
    apps = []
    with Session(engine) as db:
        for name in APPS:
            app = db.exec(select(App).where(App.name == f"demo-{name}")).first()
            if app is None:
                app, api_key = create_app(db, name=f"demo-{name}")
            else:
                api_key = add_api_key(db, app=app)
            apps.append(DemoApp(id_of(app), app.app_key, api_key))
        db.commit()
    return apps


def _traffic(rng: random.Random, apps: list[DemoApp], count: int, start_ms: int, end_ms: int):
    """Users who come back in sessions of a few turns, a minute or two apart."""
    if not apps:
        return
    users = [_user(rng, index) for index in range(max(5, count // 12))]
    produced = 0
    while produced < count:
        app, user = rng.choice(apps), rng.choice(users)
        provider, model, _, median = rng.choices(MODELS, weights=[m[2] for m in MODELS])[0]
        at = rng.randint(start_ms, end_ms - 3_600_000)
        session = f"chat-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}" if rng.random() < 0.2 else ""
        for _ in range(min(count - produced, rng.randint(1, 6))):
            latency = int(median * math.exp(rng.gauss(0, 0.5)))
            yield _payload(rng, app, user, provider, model, at, latency, session)
            produced += 1
            at += latency + rng.randint(10_000, 180_000)


def _user(rng: random.Random, index: int) -> dict:
    kind = rng.random()
    if kind < 0.6:
        return {"userId": f"user-{index:05d}", "firstName": rng.choice(["Ana", "Ben", "Chen", "Dara", "Eli"]),
                "lastName": rng.choice(["Khan", "Okafor", "Silva", "Novak"]), "isAuthenticated": 1}
    if kind < 0.9:
        return {"email": f"customer{index}@example.com"}
    return {}


def _payload(rng, app: DemoApp, user: dict, provider: str, model: str, at: int, latency: int, session: str) -> dict:
    question = rng.choice(QUESTIONS)
    tokens_in, tokens_out = rng.randint(40, 1200), rng.randint(20, 600)
    reported = rng.random() > 0.15
    failed = rng.random() < 0.02
    request, response = _exchange(provider, model, question, tokens_in, tokens_out, reported, rng)
    if failed and isinstance(response, dict):
        response["error"] = {"message": "rate limit exceeded"}
    return {"reconify": {"format": provider, "type": "chat", "version": "demo", "appKey": app.app_key,
                         "apiKey": app.api_key},
            "request": request, "response": response, "user": user, "session": session, "sessionTimeout": "",
            "timestamps": {"request": at, "response": at + latency}}


def _exchange(provider, model, question, tokens_in, tokens_out, reported, rng):
    ref = uuid.UUID(int=rng.getrandbits(128)).hex
    messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": question}]
    if provider in ("openai", "mistral"):
        response = {"id": f"chatcmpl-{ref}", "model": model, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}]}
        if reported:
            response["usage"] = {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                                 "total_tokens": tokens_in + tokens_out}
        return {"model": model, "messages": messages}, response
    if provider == "anthropic":
        response = {"id": f"msg_{ref}", "type": "message", "model": model, "stop_reason": "end_turn",
                    "content": [{"type": "text", "text": ANSWER}]}
        if reported:
            response["usage"] = {"input_tokens": tokens_in, "output_tokens": tokens_out}
        return {"model": model, "system": messages[0]["content"], "messages": messages[1:]}, response
    if provider == "bedrock":
        body = {"generation": ANSWER, "stop_reason": "stop"}
        if reported:
            body.update(prompt_token_count=tokens_in, generation_token_count=tokens_out)
        prompt = f"<|begin_of_text|><|start_header_id|>user<|end_header_id|>{question}"
        return ({"modelId": model, "body": f'{{"prompt": "{prompt}", "max_gen_len": 512}}'},
                {"requestId": ref, "body": body})
    if provider == "cohere":
        response = {"response_id": ref, "generation_id": f"gen-{ref}", "text": ANSWER, "finish_reason": "COMPLETE"}
        if reported:
            response["meta"] = {"billed_units": {"input_tokens": tokens_in, "output_tokens": tokens_out}}
        return {"model": model, "message": question}, response
    return {"model": model, "prompt": question}, ANSWER
