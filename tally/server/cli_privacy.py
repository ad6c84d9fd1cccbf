"""`tally apps set-redaction`: what ingest hides of an app before storing."""

from typing import Annotated

import typer

from tally.ingest.detectors import NAMES
from tally.ingest.keys import find_app, set_redaction
from tally.ingest.redaction import Policy, PolicyError
from tally.server.cli_store import store
from tally.store import audit


def apps_set_redaction(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    mode: Annotated[str | None, typer.Option(help="off, mask ([EMAIL]), hash ([EMAIL:9f86d0…], keyed) or "
                                                  "drop-body (no text at all, the numbers kept)")] = None,
    detect: Annotated[list[str] | None, typer.Option(
        help=f"A built-in detector, repeatable [default: all: {', '.join(NAMES)}]")] = None,
    pattern: Annotated[list[str] | None, typer.Option(
        help="A detector of your own, LABEL=REGEX (a match becomes [LABEL]), repeatable")] = None,
    default: Annotated[bool, typer.Option("--default", help="Back to the server's policy (TALLY_REDACTION_*)")] = False,
) -> None:
    """Set what ingest hides in APP's prompts, answers and raw JSON before anything is written. Every server
    applies it within TALLY_KEY_CACHE_SECONDS; what was stored before keeps what it was stored with."""
    if default == (mode is not None):
        raise typer.BadParameter("give --mode, or --default to use the server's policy")
    policy = None
    if mode is not None:
        patterns = dict(_label_and_regex(item) for item in pattern or [])
        try:
            policy = Policy.parse({"mode": mode, "detectors": detect or list(NAMES), "patterns": patterns})
        except PolicyError as error:
            raise typer.BadParameter(error.message, param_hint=f"--{error.field.split('.')[0]}") from None
    with store() as db:
        changed = set_redaction(db, app=find_app(db, app_name), policy=policy)
        audit.record(db, actor=audit.cli_actor(), action="app.redaction", target=changed.name,
                     detail={"policy": changed.redaction})
    typer.echo(f"{app_name}: {policy.describe() if policy else 'the server policy'}")


def _label_and_regex(item: str) -> tuple[str, str]:
    label, equals, regex = item.partition("=")
    if not equals:
        raise typer.BadParameter(f"{item!r} is not LABEL=REGEX", param_hint="--pattern")
    return label, regex
