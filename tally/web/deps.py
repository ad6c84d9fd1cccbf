"""FastAPI dependencies: a database session per request and the token guards (a scope each)."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import BackgroundTasks, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from tally.store.engine import failure_reason, writing
from tally.store.models import ReadToken
from tally.store.read_tokens import allows, due_for_use_mark, find_live_token, mark_used
from tally.store.secrets import now_ms


def client_address(request: Request) -> str:
    """The client's address: the peer's, or the one a trusted proxy forwarded (TALLY_TRUSTED_PROXIES)."""
    return request.client.host if request.client else "?"


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
_bearer = HTTPBearer(auto_error=False, description="A token from `tally tokens create NAME [--scope SCOPE]`.")
log = logging.getLogger(__name__)


def _token(request: Request, db: Session, credentials: HTTPAuthorizationCredentials | None, scope: str,
           after: BackgroundTasks) -> ReadToken:
    if credentials is None:
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    now = now_ms()
    token = find_live_token(db, token=credentials.credentials, now=now)
    if token is None:
        raise HTTPException(401, "invalid, expired or revoked token", headers={"WWW-Authenticate": "Bearer"})
    if not allows(token.scope, scope):
        raise HTTPException(403, f"this token's scope is {token.scope!r}; this needs {scope!r} "
                                 "(`tally tokens create NAME --scope " + scope + "`)")
    if due_for_use_mark(token, now=now) and token.id is not None:
        after.add_task(_mark_used, request.app.state.engine, token.id, now)
    return token


def _mark_used(engine, token_id: int, now: int) -> None:
    """After the answer, in a transaction of its own: the request's only reads, and on SQLite waiting for the
    write lock must not delay the answer."""
    try:
        with writing(engine).begin() as conn:
            mark_used(conn, token_id, now=now)
    except OperationalError as error:  # a busy or full store: the mark waits for the next use
        log.warning("a token's last use was not recorded: %s", failure_reason(error))


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require_read_token(request: Request, db: SessionDep, credentials: Bearer, after: BackgroundTasks) -> ReadToken:
    return _token(request, db, credentials, "read", after)


def require_export_token(request: Request, db: SessionDep, credentials: Bearer, after: BackgroundTasks) -> ReadToken:
    return _token(request, db, credentials, "export", after)


def require_admin_token(request: Request, db: SessionDep, credentials: Bearer, after: BackgroundTasks) -> ReadToken:
    return _token(request, db, credentials, "admin", after)


ReadTokenDep = Annotated[ReadToken, Depends(require_read_token)]
ExportTokenDep = Annotated[ReadToken, Depends(require_export_token)]
AdminTokenDep = Annotated[ReadToken, Depends(require_admin_token)]
