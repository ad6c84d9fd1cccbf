"""Read tokens: the bearer secrets that open the read API."""

from sqlmodel import Session, select

from tally.store.models import ReadToken
from tally.store.secrets import display_prefix, hash_secret, new_secret, now_ms

READ_TOKEN_PREFIX = "tly_rt_"


def create_read_token(db: Session, *, name: str) -> str:
    token = new_secret(READ_TOKEN_PREFIX)
    db.add(ReadToken(name=name, prefix=display_prefix(token), token_hash=hash_secret(token), created_at=now_ms()))
    db.flush()
    return token


def find_live_token(db: Session, *, token: str) -> ReadToken | None:
    found = db.exec(select(ReadToken).where(ReadToken.token_hash == hash_secret(token))).first()
    return found if found is not None and found.revoked_at is None else None
