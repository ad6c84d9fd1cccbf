"""FastAPI dependencies: a database session per request and the read-token guard."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from tally.store.engine import writing
from tally.store.models import ReadToken
from tally.store.read_tokens import find_live_token


def _committed_once(engine) -> Iterator[Session]:
    with Session(engine) as db:
        try:
            yield db
            db.commit()
        except Exception:
            db.rollback()
            raise


def get_db(request: Request) -> Iterator[Session]:
    """A session whose work is committed once, at the end of the request, or rolled back."""
    yield from _committed_once(request.app.state.engine)


def get_writing_db(request: Request) -> Iterator[Session]:
    """The same for a request that reads, then writes (see `engine.writing`)."""
    yield from _committed_once(writing(request.app.state.engine))


@contextmanager
def write_transaction(request: Request) -> Iterator[Session]:
    """A transaction of its own that takes the write lock first and commits when the block ends, so that what it
    wrote can be acted on before the answer (the scheduler reads schedules on a connection of its own)."""
    yield from _committed_once(writing(request.app.state.engine))


# "function" scope: the commit happens before the answer is sent, so a client that reads after a 2xx (or follows
# a redirect, as the browser does after logging in) always sees what the request wrote.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
WritingSessionDep = Annotated[Session, Depends(get_writing_db, scope="function")]
_bearer = HTTPBearer(auto_error=False, description="A read token from `tally tokens create NAME`.")


def require_read_token(
    db: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ReadToken:
    if credentials is None:
        raise HTTPException(401, "a bearer read token is required", headers={"WWW-Authenticate": "Bearer"})
    token = find_live_token(db, token=credentials.credentials)
    if token is None:
        raise HTTPException(401, "invalid or revoked read token", headers={"WWW-Authenticate": "Bearer"})
    return token


ReadTokenDep = Annotated[ReadToken, Depends(require_read_token)]
