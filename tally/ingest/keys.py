"""Apps and their secret API keys: creating, rotating, revoking, and verifying them on the hot path."""

import asyncio
import hmac
import math
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from tally.ingest.redaction import Policy
from tally.store.models import ApiKey, App, id_of
from tally.store.secrets import display_prefix, hash_secret, new_secret, now_ms

API_KEY_PREFIX = "tk_"
APP_KEY_PREFIX = "app_"
_RELOAD_ON_MISS_SECONDS = 1.0


class AppError(ValueError):
    """An app-management request that cannot be carried out (unknown app, duplicate name…)."""


def create_app(db: Session, *, name: str, session_timeout_minutes: float | None = None) -> tuple[App, str]:
    """A new app and its first API key, returned in plain text once; only its hash is stored."""
    if db.exec(select(App).where(App.name == name)).first() is not None:
        raise AppError(f"an app named {name!r} already exists")
    app = App(name=name, app_key=APP_KEY_PREFIX + secrets.token_hex(12),
              session_timeout_minutes=session_timeout_minutes, created_at=now_ms())
    db.add(app)
    db.flush()
    return app, add_api_key(db, app=app)


def add_api_key(db: Session, *, app: App) -> str:
    key = new_secret(API_KEY_PREFIX)
    db.add(ApiKey(app_id=id_of(app), prefix=display_prefix(key), key_hash=hash_secret(key), created_at=now_ms()))
    db.flush()
    return key


def revoke_api_keys(db: Session, *, app: App, prefix: str) -> int:
    """Revoke the app's live keys starting with `prefix`; refuses to revoke the last live key."""
    live = db.exec(select(ApiKey).where(ApiKey.app_id == app.id, col(ApiKey.revoked_at).is_(None))).all()
    matching = [key for key in live if key.prefix.startswith(prefix) or prefix.startswith(key.prefix)]
    if not matching:
        raise AppError(f"no live key of {app.name!r} starts with {prefix!r}")
    if len(matching) == len(live):
        raise AppError("that would revoke every key of the app; rotate-key first")
    for key in matching:
        key.revoked_at = now_ms()
        db.add(key)
    db.flush()
    return len(matching)


def set_limits(db: Session, *, app: App, per_second: float | None, bytes_per_second: float | None) -> App:
    """The app's own ingest limits (None: the server's default; 0: no limit), in force on every replica within
    TALLY_KEY_CACHE_SECONDS."""
    for name, value in (("per_second", per_second), ("bytes_per_second", bytes_per_second)):
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise AppError(f"--{name.replace('_', '-')} must be 0 (no limit) or a positive number")
    app.max_per_second, app.max_bytes_per_second = per_second, bytes_per_second
    db.add(app)
    db.flush()
    return app


def set_redaction(db: Session, *, app: App, policy: Policy | None) -> App:
    """The app's own redaction policy (None: the server's), in force on every replica within
    TALLY_KEY_CACHE_SECONDS. Interactions stored before keep what they were stored with."""
    app.redaction = policy.to_json() if policy is not None else None
    db.add(app)
    db.flush()
    return app


def find_app(db: Session, name_or_key: str) -> App:
    app = db.exec(select(App).where((App.name == name_or_key) | (App.app_key == name_or_key))).first()
    if app is None:
        raise AppError(f"no app named {name_or_key!r}")
    return app


def live_keys(db: Session, *, app: App) -> list[ApiKey]:
    return list(db.exec(select(ApiKey).where(ApiKey.app_id == app.id, col(ApiKey.revoked_at).is_(None))).all())


@dataclass(frozen=True, slots=True)
class VerifiedApp:
    app_id: int
    session_timeout_minutes: float | None
    max_per_second: float | None = None  # the app's own ingest limits; None: the server's defaults
    max_bytes_per_second: float | None = None
    redaction: Policy | None = None  # the app's own; None: the server's


@dataclass(frozen=True, slots=True)
class _AppEntry:
    app: VerifiedApp | None
    key_hashes: tuple[str, ...]


# Compared against when the app key is unknown, so that an unknown app costs what a wrong key costs.
_UNKNOWN_APP = _AppEntry(None, (hash_secret("unknown-app"),))


class KeyVerifier:
    """Checks (app key, API key) pairs against an in-memory copy of the key table, reloaded every few seconds.

    Reloads run in a worker thread, one at a time, with every request that needs them awaiting the same one: a
    store round trip never blocks the event loop, and a burst of requests costs one query, not one each.
    """

    def __init__(self, engine: Engine, ttl_seconds: float) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._entries: dict[str, _AppEntry] = {}
        self._verified: dict[tuple[str, str], VerifiedApp] = {}  # pairs that matched since the last reload
        self._loaded_at = float("-inf")
        self._reloading: asyncio.Future | None = None

    async def verify(self, app_key: str, api_key: str) -> VerifiedApp | None:
        if self._age() > self._ttl:
            await self._reload()
        found = self._verified.get((app_key, api_key))
        if found is not None:
            return found
        found = self._match(app_key, api_key)
        if found is None and self._age() > _RELOAD_ON_MISS_SECONDS:
            await self._reload()  # a key created a moment ago by the CLI works at once
            found = self._match(app_key, api_key)
        if found is not None:
            self._verified[(app_key, api_key)] = found
        return found

    def _age(self) -> float:
        return time.monotonic() - self._loaded_at

    def _match(self, app_key: str, api_key: str) -> VerifiedApp | None:
        digest = hash_secret(api_key)
        entry = self._entries.get(app_key, _UNKNOWN_APP)
        matched = False
        for key_hash in entry.key_hashes:
            matched |= hmac.compare_digest(key_hash, digest)
        return entry.app if matched else None

    async def _reload(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.ensure_future(asyncio.to_thread(self._load))
        await asyncio.shield(self._reloading)

    def _load(self) -> None:
        query = sa_select(col(App.id), col(App.app_key), col(App.session_timeout_minutes), col(App.max_per_second),
                          col(App.max_bytes_per_second), col(App.redaction), col(ApiKey.key_hash)).join(
            ApiKey, (col(ApiKey.app_id) == col(App.id)) & col(ApiKey.revoked_at).is_(None), isouter=True
        )
        hashes: dict[str, list[str]] = {}
        apps: dict[str, VerifiedApp] = {}
        with self._engine.connect() as connection:
            for app_id, app_key, timeout, per_second, bytes_per_second, redaction, key_hash in \
                    connection.execute(query):
                policy = Policy.parse(redaction) if redaction is not None else None
                apps[app_key] = VerifiedApp(int(app_id or 0), timeout, per_second, bytes_per_second, policy)
                hashes.setdefault(app_key, [])
                if key_hash:
                    hashes[app_key].append(key_hash)
        self._entries = {key: _AppEntry(apps[key], tuple(hashes[key])) for key in apps}
        self._verified = {}
        self._loaded_at = time.monotonic()
