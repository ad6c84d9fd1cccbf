"""The Alerts page: the rules (their webhooks by host only: a Slack hook's path is its secret) and the history of
what warned, fired and resolved, with each delivery's outcome; of the apps the account sees."""

from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tally.dashboard.routes import page_response
from tally.dashboard.web_session import AccountDep
from tally.store.alerts import list_rules, recent_events
from tally.store.app_access import app_ids
from tally.web.deps import SessionDep

router = APIRouter(prefix="/dashboard/alerts", include_in_schema=False)
SHOWN = 200  # the newest events; `tally alerts history --limit N` reaches the rest


@router.get("")
def alerts(request: Request, account: AccountDep, db: SessionDep) -> Response:
    apps = app_ids(account.apps)
    rules = [{"rule": rule, "webhook_host": urlsplit(rule.webhook_url).netloc} for rule in list_rules(db, apps=apps)]
    events = recent_events(db, apps=apps, limit=SHOWN)
    return page_response(request, account, "alerts.html", "alerts", None, rules=rules, events=events)
