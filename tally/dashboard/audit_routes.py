"""The audit trail on the dashboard, for admins: who changed tokens, accounts, app keys and export schedules, and
every login, newest first (what `tally audit` prints)."""

import json

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from tally.dashboard.routes import page_response
from tally.dashboard.web_session import AccountDep
from tally.store import audit
from tally.store.accounts import may
from tally.web.deps import SessionDep

router = APIRouter(prefix="/dashboard/audit", include_in_schema=False)
SHOWN = 200  # the newest events; `tally audit --since … --limit …` reaches the rest


@router.get("")
def audit_page(request: Request, account: AccountDep, db: SessionDep) -> Response:
    if not may(account, "admin"):
        raise HTTPException(403, "only an admin may read the audit trail")
    events = [{**event.model_dump(), "detail": json.loads(event.detail) if event.detail else {}}
              for event in audit.events(db, limit=SHOWN + 1)]
    return page_response(request, account, "audit.html", "audit", None, events=events[:SHOWN],
                         more=len(events) > SHOWN)
