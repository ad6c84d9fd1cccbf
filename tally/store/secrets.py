"""Making and hashing the secrets Tally hands out (API keys, read tokens)."""

import hashlib
import secrets
import time


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
