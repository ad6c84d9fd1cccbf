"""The load of bench/ingest.py: pre-built requests sent by a minimal HTTP/1.1 client over keep-alive connections,
in a process of its own, measuring latency, server CPU and the analytics' freshness while it runs."""

import asyncio
import importlib.util
import itertools
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

HOST = "127.0.0.1"
WARMUP_SECONDS = 1.0
POOL_RATE = 10_000  # requests/s the pre-built pool lasts for; well above what one worker serves here
USERS = 2_000
STEP_MS = 200  # request time between consecutive payloads: rarer users' sessions time out (10 min) between calls
INTERACTION_ID = re.compile(rb'"interaction_id":(\d+)')
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)
CONNECTION_CLOSE = re.compile(rb"\r\nconnection: *close", re.IGNORECASE)

SYSTEM_PROMPT = (
    "You are Quill, the support assistant of Northwind Books, an online bookshop. Answer in the customer's "
    "language, in at most three short paragraphs. Never invent order numbers, prices or delivery dates. Refunds: "
    "30 days for unread books, 14 days for e-books not downloaded. Shipping is free above 35 EUR. If unsure, offer "
    "to hand over to a human colleague, who answers within one working day."
)
QUESTIONS = [
    "Where is my order? I ordered three paperbacks last Tuesday and the tracking page has not changed since.",
    "Can I return an e-book I bought by mistake? I have not downloaded it yet, it was meant to be the audiobook.",
    "Do you ship to Norway, and if so how long does it take and are there customs fees I should expect?",
    "The hardcover I received has a damaged spine. Can you send a replacement instead of refunding me?",
    "Is there a student discount, and can it be combined with the free shipping threshold on larger orders?",
]
ANSWERS = [
    ("I'm sorry your order is taking longer than expected. Parcels are handed to the carrier within two working "
     "days, and tracking updates once the parcel reaches the first sorting centre. If there is no update by "
     "Friday, reply here and I will open an investigation with the carrier."),
    ("Yes. E-books that have not been downloaded can be refunded within 14 days. Open Orders in your account, "
     "pick the e-book and choose 'Request refund'; the money returns to your payment method within five working "
     "days. The audiobook is listed separately under the same title."),
    ("We do ship to Norway: standard delivery takes five to eight working days, express two to three. As Norway "
     "is outside the EU, the carrier may charge import VAT; checkout shows an estimate so nothing surprises you."),
]


@dataclass
class Keys:
    app_id: int
    app_key: str
    api_key: str
    read_token: str


@dataclass
class Result:
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    acked_bodies: list[bytes] = field(default_factory=list)
    interaction_ids: list[int] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # by process group, over `seconds`
    requests_built: int = 0
    mean_body_bytes: float = 0.0
    freshness_lags_ms: list[int] = field(default_factory=list)
    accepted_by_port: Counter = field(default_factory=Counter)

    @property
    def accepted(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self, quantile: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[int(quantile * (len(ordered) - 1))] * 1000 if ordered else float("nan")

    @property
    def cpu(self) -> dict[str, float]:
        """Cores used by each process group that used any."""
        return {name: spent / self.seconds for name, spent in self.cpu_seconds.items() if spent and self.seconds}

    def cpu_per_1k(self, name: str) -> float:
        """CPU milliseconds of a process group per 1,000 accepted interactions (its CPU µs per interaction)."""
        return self.cpu_seconds.get(name, 0.0) / self.accepted * 1_000_000 if self.accepted else float("nan")

    def failures(self) -> str:
        bad = {status: count for status, count in sorted(self.statuses.items()) if not 200 <= status < 300}
        return ", ".join(f"{'disconnect' if s == 0 else s}: {n}" for s, n in bad.items()) or "none"



def build_requests(keys: Keys, count: int, seed: int, start_ms: int) -> list[bytes]:
    rng = random.Random(seed)
    # Zipf-like popularity: a few busy users, a long tail of occasional ones.
    weights = [1 / (rank + 1) ** 0.5 for rank in range(USERS)]
    users = rng.choices(range(USERS), weights=weights, k=count)
    return [_request(chat_payload(keys, i, user, rng, start_ms + i * STEP_MS + rng.randrange(STEP_MS), seed))
            for i, user in enumerate(users)]


def chat_payload(keys: Keys, index: int, user: int, rng: random.Random, at_ms: int, seed: int) -> dict:
    question = rng.choice(QUESTIONS)
    return {
        "reconify": {"format": "openai", "type": "chat", "version": "3.0.0",
                     "appKey": keys.app_key, "apiKey": keys.api_key},
        "request": {"model": "gpt-4o-mini", "temperature": 0.3,
                    "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]},
        "response": {
            "id": f"chatcmpl-{seed:x}-{index}", "object": "chat.completion", "created": at_ms // 1000,
            "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_0ba0d124f1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": rng.choice(ANSWERS)},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": _usage(190 + rng.randrange(40), 80 + rng.randrange(40)),
        },
        **_identity(user, rng, at_ms),
        "sessionTimeout": "",
        "timestamps": {"request": at_ms, "response": at_ms + 400 + rng.randrange(2600)},
    }


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _identity(user: int, rng: random.Random, at_ms: int) -> dict:
    """Mostly known users grouped by inactivity; some email-only, some anonymous, some apps sending sessions."""
    if rng.random() < 0.05:
        return {"user": {}, "session": ""}
    if user % 10 == 0:
        fields = {"email": f"Reader{user}@example.com"}
    else:
        fields = {"userId": f"u-{user}", "email": f"reader{user}@example.com", "firstName": "Sam",
                  "lastName": f"Reader{user}", "isAuthenticated": True}
    session = f"conv-{user}-{at_ms // 3_600_000}" if user % 5 == 1 else ""  # a new conversation every hour
    return {"user": fields, "session": session}


def _request(payload: dict) -> bytes:
    body = orjson.dumps(payload)
    head = (f"POST /track HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def load(sender, ports: list[int], servers: dict[str, int], keys: Keys, seconds: float, connections: int,
         seed: int, start_ms: int, stores: bool = True) -> None:
    """Spreads the connections over `ports` (one replica each) in turn; meters the CPU of `servers` (name → pid,
    each counted with its child processes), of PostgreSQL's processes if any, and of this client."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # on Ctrl-C the parent stops this process
    if importlib.util.find_spec("uvloop"):
        import uvloop
        uvloop.install()
    requests = build_requests(keys, int(POOL_RATE * (seconds + WARMUP_SECONDS)), seed, start_ms)
    result = asyncio.run(drive(ports, requests, connections, seconds, servers, keys.read_token, stores))
    result.requests_built = len(requests)
    result.mean_body_bytes = sum(len(r.partition(b"\r\n\r\n")[2]) for r in requests) / len(requests)
    result.interaction_ids = [int(m.group(1)) for m in map(INTERACTION_ID.search, result.acked_bodies) if m]
    result.acked_bodies = []
    sender.send(result)


async def drive(ports: list[int], requests: list[bytes], connections: int, seconds: float, servers: dict[str, int],
                read_token: str, stores: bool) -> Result:
    """`stores`: the server is Tally, each request is sent once (a repeat would be a duplicate, answered without
    storing); a baseline, which stores nothing, gets the pool over again if it runs through it."""
    result = Result()
    pending = iter(requests) if stores else itertools.cycle(requests)  # shared by every connection
    begin = time.perf_counter() + WARMUP_SECONDS
    window = (begin, begin + seconds)
    meter = asyncio.create_task(cpu_meter(servers, seconds, result))
    probe = asyncio.create_task(freshness_probe(ports[0], read_token, window, result) if stores else asyncio.sleep(0))
    await asyncio.gather(*(connection(ports[n % len(ports)], pending, window, result) for n in range(connections)))
    await probe
    result.seconds = min(time.perf_counter(), window[1]) - window[0]  # shorter only if the pool ran out
    await meter
    return result


async def connection(port: int, pending: Iterator[bytes], window: tuple[float, float], result: Result) -> None:
    """One keep-alive connection, reopened when the server closes it after an answer (uvicorn does after a 500)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for request in pending:
            sent = time.perf_counter()
            writer.write(request)
            status, body, closing = await read_response(reader)
            done = time.perf_counter()
            if 200 <= status < 300:
                result.acked_bodies.append(body)  # warm-up too: every acknowledged row must be stored
            if done >= window[1]:
                break
            if done >= window[0]:
                result.statuses[status] += 1
                result.latencies.append(done - sent)
                result.accepted_by_port[port] += 200 <= status < 300
            if closing:
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
    except (ConnectionError, asyncio.IncompleteReadError):
        result.statuses[0] += 1
    finally:
        writer.close()


async def freshness_probe(port: int, read_token: str, window: tuple[float, float], result: Result) -> None:
    """Twice a second, how far the analytics lag behind the store while the load runs (the bare app has none)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    request = (f"GET /api/v1/analytics/status HTTP/1.1\r\nHost: {HOST}\r\n"
               f"Authorization: Bearer {read_token}\r\n\r\n").encode()
    try:
        while time.perf_counter() < window[1]:
            writer.write(request)
            status, body, _ = await read_response(reader)
            if status != 200:
                return
            lag = orjson.loads(body).get("lag_ms")
            if time.perf_counter() >= window[0] and lag is not None:
                result.freshness_lags_ms.append(lag)
            await asyncio.sleep(0.5)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the server closes the connection after this answer."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = CONTENT_LENGTH.search(head)
    body = await reader.readexactly(int(length.group(1)) if length else 0)
    return int(head[9:12]), body, CONNECTION_CLOSE.search(head) is not None


async def cpu_meter(servers: dict[str, int], seconds: float, result: Result) -> None:
    """CPU seconds spent over the measured window: each server's own process and, apart, its child processes (the
    storage process), PostgreSQL's processes when it runs on this machine, and this client."""
    await asyncio.sleep(WARMUP_SECONDS)
    groups = {"client": lambda: [os.getpid()], "postgres": lambda: named("postgres")}
    for name, pid in servers.items():
        groups[name] = lambda pid=pid: [pid]
        groups[f"{name} children"] = lambda pid=pid: tree(pid)[1:]
    before = {name: cpu_seconds(members()) for name, members in groups.items()}
    await asyncio.sleep(seconds)
    result.cpu_seconds = {name: cpu_seconds(members()) - before[name] for name, members in groups.items()}


def _processes() -> dict[int, tuple[str, int]]:
    """pid → (command name, parent pid) of every process now running."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name, rest = (entry / "stat").read_text().rsplit(")", 1)
            except OSError:
                continue  # it ended meanwhile
            found[int(entry.name)] = (name.split("(", 1)[1], int(rest.split()[1]))
    return found


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    children: dict[int, list[int]] = {}
    for child, (_, parent) in _processes().items():
        children.setdefault(parent, []).append(child)
    members, index = [pid], 0
    while index < len(members):
        members += children.get(members[index], [])
        index += 1
    return members


def named(command: str) -> list[int]:
    return [pid for pid, (name, _) in _processes().items() if name == command]


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes still running (one that ended meanwhile counts as none)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
