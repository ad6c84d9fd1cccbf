"""`tally audit`: the audit trail, newest first."""

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from tally.server.cli_store import store
from tally.store import audit


def audit_trail(
    since: Annotated[str | None, typer.Option(help="From this UTC date or ISO datetime on (e.g. 2026-12-01)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many events")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array")] = False,
) -> None:
    """Who changed tokens, accounts, app keys and export schedules, and every dashboard login: when, from where."""
    since_ms = _since(since) if since else 0
    with store() as db:
        found = [event.model_dump() for event in audit.events(db, since_ms=since_ms, limit=limit)]
    for event in found:
        event["detail"] = json.loads(event["detail"]) if event["detail"] else None
    if as_json:
        typer.echo(json.dumps(found))
        return
    for event in found:
        moment = datetime.fromtimestamp(event["at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        detail = " ".join(f"{key}={value}" for key, value in (event["detail"] or {}).items())
        typer.echo(f"{moment}  {event['action']:<16} {event['actor']}"
                   + (f"  on {event['target']}" if event["target"] else "")
                   + (f"  from {event['address']}" if event["address"] else "") + (f"  {detail}" if detail else ""))


def _since(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date (YYYY-MM-DD) or an ISO datetime",
                                 param_hint="--since") from None
    return round((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)
