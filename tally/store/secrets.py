"""Making and hashing the secrets Tally hands out (API keys, read tokens), and the secrets replicas share."""

import hashlib
import secrets
import time
from pathlib import Path

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from tally.store.models import InstanceSecret, table_of


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_secret(prefix: str) -> str:
    """A 256-bit random secret, prefixed so that a leaked one is recognisable (`tk_…`, `tly_rt_…`)."""
    return prefix + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    # The secrets are 256-bit random, so a fast hash is safe here; a slow KDF would only cost ingest time.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(secret: str) -> str:
    """The part of a secret shown in listings and used to name it on the command line."""
    return secret[:12]


def shared_secret(engine: Engine, *, name: str, legacy_file: Path | None = None) -> str:
    """The secret every replica of this store uses for `name`: made once, by whichever server comes first (a
    secret file an older server left in its data directory is adopted, so its cookies stay valid), and kept in
    the store; never a different one per replica."""
    table = table_of(InstanceSecret)
    with engine.connect() as conn:
        found = conn.execute(select(table.c.value).where(table.c.name == name)).scalar()
    if found is not None:
        return found
    made = legacy_file.read_text().strip() if legacy_file is not None and legacy_file.exists() else ""
    try:
        with engine.begin() as conn:
            conn.execute(insert(table).values(name=name, value=made or secrets.token_urlsafe(48)))
    except IntegrityError:
        pass  # another replica made it first: theirs it is
    with engine.connect() as conn:
        return conn.execute(select(table.c.value).where(table.c.name == name)).scalar_one()
