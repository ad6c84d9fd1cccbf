"""Three real `tally serve` replicas on one PostgreSQL, fed concurrent, shuffled, interleaved traffic, store exactly
what one process stores and what the pure rules say: the same users, sessions, duplicates and profiles, no 5xx.

On SQLite (one server per store) the same traffic goes concurrently to one `tally serve` process.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from tally.ingest.sessions import group_sessions
from tally.server import migrations
from tally.store.engine import build_engine, writing
from tally.store.read_tokens import create_read_token
from tests.conftest import backend_of, free_port, fresh_store, make_app, start_server, wait_until
from tests.payloads import openai_chat

TALLY = Path(sys.executable).with_name("tally")
MINUTE = 60_000
DEFAULT_TIMEOUT = 10 * MINUTE


@dataclass
class Planned:
    """One distinct interaction of the traffic, and what the rules say about it."""

    ref: str
    user: str  # its identity: userId, else the lower-cased email
    at: int
    timeout_ms: int | None  # the timeout the session rule applies after it
    session: str  # explicit session id, or ""
    first_name: str
    body: dict = field(repr=False)


def _plan(keys, seed: int, base: int) -> list[Planned]:
    """Users known by userId (some with an email too) and by email only (in changing case), several interactions
    each within an hour, at whole minutes (so some share an instant), with mixed timeouts and explicit sessions."""
    chance = random.Random(seed)
    identities = [({"userId": f"user-{n}"} | ({"email": f"user{n}@corp.example"} if n % 3 == 0 else {}), f"user-{n}")
                  for n in range(24)]
    identities += [({"email": f"Solo{n}@Mail.Example"}, f"solo{n}@mail.example") for n in range(10)]
    planned = []
    for sent_user, identity in identities:
        for index in range(chance.randint(4, 9)):
            at = base + chance.randrange(60) * MINUTE
            timeout = chance.choice(["", "", 2, 5, 10])
            session = f"chat-{chance.randrange(3)}" if chance.random() < 0.12 else ""
            user = dict(sent_user, firstName=f"Name{chance.randrange(5)}")
            if "email" in user and chance.random() < 0.5:
                user["email"] = user["email"].swapcase()
            ref = f"chatcmpl-{identity}-{index}-{seed}"
            body = openai_chat(keys, user=user, session=session, session_timeout=timeout, at_ms=at, response_id=ref)
            timeout_ms = timeout * MINUTE if timeout != "" else (None if session else DEFAULT_TIMEOUT)
            planned.append(Planned(ref, identity, at, timeout_ms, session, user["firstName"], body))
    return planned


def _expected_sessions(planned: list[Planned]) -> list[list[str]]:
    """The documented rule, per grouping key: the explicit session id, else the user."""
    by_key = defaultdict(list)
    for item in planned:
        by_key[("s", item.session) if item.session else ("u", item.user)].append(item)
    groups = []
    for items in by_key.values():
        labels = group_sessions([(item.at, item.timeout_ms) for item in items])
        groups += _partition({item.ref: label for item, label in zip(items, labels)})
    return sorted(groups)


def _expected_first_names(planned: list[Planned]) -> dict[str, str]:
    """Per user, the first name of its latest interaction by request time (at one instant, the greater value)."""
    latest = {}
    for item in planned:
        latest[item.user] = max(latest.get(item.user, (item.at, item.first_name)), (item.at, item.first_name))
    return {user: name for user, (_, name) in latest.items()}


def _partition(label_of: dict) -> list[list]:
    groups = defaultdict(list)
    for key, label in label_of.items():
        groups[label].append(key)
    return sorted(sorted(group) for group in groups.values())


@dataclass
class Stored:
    """What a store holds, keyed by response id."""

    interaction: dict[str, int]
    user: dict[str, int]
    session: dict[str, int]
    profile: dict[int, tuple]  # user id → its identity and profile
    live_sessions: int

    @classmethod
    def read(cls, engine) -> "Stored":
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT response_ref, id, user_id, session_id FROM interaction")).all()
            profile = {row[0]: tuple(row[1:]) for row in conn.execute(text(
                "SELECT id, external_id, email_key, email, first_name, first_name_at, email_at FROM end_user"))}
            live = conn.execute(text("SELECT count(*) FROM interaction_session WHERE merged_into IS NULL")).scalar()
        return cls({r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}, {r[0]: r[3] for r in rows}, profile, live)

    def users_by_identity(self, planned: list[Planned]) -> dict[str, tuple]:
        identity = {item.ref: item.user for item in planned}
        return {identity[ref]: self.profile[user_id] for ref, user_id in self.user.items()}


def _post_all(urls: list[str], planned: list[Planned], seed: int) -> list[tuple[str, int, dict]]:
    """Every user's first two interactions reach two replicas at the same moment; then everything else, repeats of
    a sixth of them included, shuffled, from 16 threads at once, each to a random replica."""
    chance = random.Random(seed)
    by_user = defaultdict(list)
    for item in planned:
        by_user[item.user].append(item)
    firsts = [(items[0], items[1]) for items in by_user.values()]
    rest = [item for items in by_user.values() for item in items[2:]]
    rest += chance.sample(planned, len(planned) // 6)
    chance.shuffle(rest)
    answers: list[tuple[str, int, dict]] = []
    clients = [httpx.Client(base_url=url, timeout=60) for url in urls]

    def post(item: Planned, replica: int, together: threading.Barrier | None = None) -> None:
        if together is not None:
            together.wait(timeout=30)
        answer = clients[replica].post("/track", json=item.body)
        answers.append((item.ref, answer.status_code, answer.json()))

    try:
        with ThreadPoolExecutor(16) as pool:
            pairs = []
            for first, second in firsts:
                together, one = threading.Barrier(2), chance.randrange(len(urls))
                pairs += [pool.submit(post, first, one, together),
                          pool.submit(post, second, (one + 1) % len(urls), together)]
            for future in pairs:
                future.result()
        with ThreadPoolExecutor(16) as pool:
            for future in [pool.submit(post, item, chance.randrange(len(urls))) for item in rest]:
                future.result()
    finally:
        for http in clients:
            http.close()
    return answers


def _replica(settings, port: int, data_dir: Path, workers: int = 1) -> subprocess.Popen:
    env = {**os.environ, "TALLY_DATABASE_URL": settings.database_url, "TALLY_DATA_DIR": str(data_dir),
           "TALLY_PORT": str(port)}
    data_dir.mkdir(parents=True)
    with (data_dir / "serve.log").open("w") as log:
        return subprocess.Popen([str(TALLY), "serve", "--workers", str(workers)], env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def _read_token(engine) -> str:
    with Session(writing(engine)) as db:  # replicas may be writing: see conftest.make_app
        token = create_read_token(db, name="traffic")
        db.commit()
    return token


def _totals_when(url: str, token: str, interactions: int) -> dict:
    """The usage totals of a replica once they count `interactions`, or as they stand after 10 s."""
    headers = {"Authorization": f"Bearer {token}"}
    params = {"from": "2000-01-01"}
    deadline = time.monotonic() + 10
    while True:
        found = httpx.get(f"{url}/api/v1/usage/totals", params=params, headers=headers).json()
        if found["interactions"] == interactions or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz").status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.parametrize("seed", [11, 29])
def test_replicas_store_what_one_process_stores(settings, tmp_path, seed):
    count = 3 if backend_of(settings) == "postgresql" else 1
    base = (int(time.time() * 1000) - 2 * 24 * 3_600_000) // MINUTE * MINUTE  # two days ago, a whole minute
    ports = [free_port() for _ in range(count)]
    # Started together on an empty store: they take turns migrating it.
    # The first replica on PostgreSQL runs two worker processes (`--workers 2`), each with a DuckDB file of its own.
    replicas = [_replica(settings, port, tmp_path / f"replica-{n}", workers=2 if n == 0 and count > 1 else 1)
                for n, port in enumerate(ports)]
    engine = build_engine(settings)
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for n, url in enumerate(urls):
            assert wait_until(lambda url=url: _up(url), seconds=60), (tmp_path / f"replica-{n}/serve.log").read_text()
        keys = make_app(engine)
        planned = _plan(keys, seed, base)
        answers = _post_all(urls, planned, seed)
        stored = Stored.read(engine)
        # Every replica's analytics catch up within the 10 s the issue allows, and answer the same.
        token = _read_token(engine)
        totals = [_totals_when(url, token, len(planned)) for url in urls]
        figures = [{name: value for name, value in found.items() if name != "freshness"} for found in totals]
        assert all(found == figures[0] for found in figures) and figures[0]["interactions"] == len(planned), totals
    finally:
        for replica in replicas:
            replica.send_signal(signal.SIGTERM)
        exits = [replica.wait(timeout=60) for replica in replicas]
        engine.dispose()
    # Each stopped cleanly: uvicorn shuts the app down, then ends by the signal it was sent.
    logs = [(tmp_path / f"replica-{n}/serve.log").read_text() for n in range(count)]
    assert all(code in (0, -signal.SIGTERM) for code in exits), (exits, [log[-2000:] for log in logs])
    assert all("Traceback" not in log and "Application shutdown complete" in log for log in logs), logs
    if count > 1:
        assert {path.name for path in (tmp_path / "replica-0").glob("*.duckdb")} == {"analytics.duckdb",
                                                                                    "analytics-2.duckdb"}

    with fresh_store(backend_of(settings), tmp_path / "single") as single_settings:
        server = start_server(_migrated(single_settings))
        single_engine = build_engine(single_settings)
        try:
            single_keys = make_app(single_engine)
            with httpx.Client(base_url=server.url, timeout=60) as http:
                for item in _plan(single_keys, seed, base):  # the same times: not a minute later
                    assert http.post("/track", json=item.body).status_code == 201
            single = Stored.read(single_engine)
        finally:
            server.stop()
            single_engine.dispose()

    # No 5xx, and one 201 per response id: every other answer is a duplicate naming the stored interaction.
    assert sorted({status for _, status, _ in answers}) == [200, 201], [a for a in answers if a[1] >= 300][:3]
    created = [ref for ref, status, _ in answers if status == 201]
    assert sorted(created) == sorted(item.ref for item in planned)
    for ref, status, body in answers:
        assert body["interaction_id"] == stored.interaction[ref] and body["user_id"] == stored.user[ref]
        assert body.get("duplicate", False) == (status == 200)
    # Users: one per identity, as one process and the rule have them, with the same profiles.
    assert _partition(stored.user) == _partition(single.user) == _partition({i.ref: i.user for i in planned})
    assert len(stored.profile) == len({item.user for item in planned})
    assert stored.users_by_identity(planned) == single.users_by_identity(planned)
    assert {user: row[3] for user, row in stored.users_by_identity(planned).items()} == _expected_first_names(planned)
    # Sessions: the documented rule, whatever the arrival order; late arrivals did merge sessions on the way.
    assert _partition(stored.session) == _partition(single.session) == _expected_sessions(planned)
    assert stored.live_sessions == single.live_sessions == len(_expected_sessions(planned))
    assert any(body["session_id"] != stored.session[ref] for ref, _, body in answers)


def _migrated(settings):
    migrations.upgrade(settings)
    return settings
