"""`tally apps set-redaction` (what ingest hides before storing), `tally apps set-retention` and `tally retention
run` (how long raw content is kept), and `tally erase` (a person)."""

import json
import time
from typing import Annotated

import typer

from tally.analytics.service import WarehouseBusy, refresh_once
from tally.ingest.detectors import NAMES
from tally.ingest.keys import find_app, set_redaction
from tally.ingest.redaction import Policy, PolicyError
from tally.server import migrations
from tally.server.cli_store import store
from tally.server.instance import running
from tally.store import audit
from tally.store.engine import build_engine
from tally.store.erasure import after_commit, erase_person
from tally.store.retention import RetentionError, apply_retention, describe, set_retention
from tally.store.settings import Settings


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


def erase(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    user_id: Annotated[str | None, typer.Option("--user-id", help="The person's userId in the app")] = None,
    email: Annotated[str | None, typer.Option("--email", help="The person's email (any case)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    """Erase a person from APP (a GDPR erasure request): their interactions with texts, raw JSON and images, their
    profile, sessions and per-user rollups, from the store and the analytics. App totals drop by their share.
    Prints what was removed and the export files written earlier that held them; records a receipt (counts,
    no personal data) in the audit log. Running it again finds nothing."""
    if not user_id and not email:
        raise typer.BadParameter("give --user-id or --email")
    settings = Settings()
    with store(settings) as db:
        erased = erase_person(db, app=find_app(db, app_name), user_id=user_id, email=email,
                              actor=audit.cli_actor(), data_dir=settings.data_dir)
    engine = build_engine(settings)
    try:
        scrubbed = after_commit(engine, erased)
    finally:
        engine.dispose()
    analytics = _analytics_purged(settings)
    if as_json:
        typer.echo(json.dumps({"erasure": erased.erasure_id, **erased.counts(), "export_files": erased.export_files,
                               "analytics": analytics, "write_ahead_log_emptied": scrubbed}))
        return
    typer.echo(f"erasure {erased.erasure_id}: {erased.users} users, {erased.interactions} interactions, "
               f"{erased.sessions} sessions, {erased.images} images removed; analytics: {analytics}")
    if erased.export_files:
        typer.echo("export files written before that hold this person (not changed; delete or redo them):")
        for file in erased.export_files:
            typer.echo(f"  {file}")


def _analytics_purged(settings: Settings) -> str:
    """Applies the erasure to the DuckDB file here, unless a server holds it: that one does at its next refresh."""
    server = running(settings)
    if server is None:
        try:
            refresh_once(settings)
            return "removed"
        except WarehouseBusy:
            pass
    holder = server.describe() if server is not None else "the server holding it"
    return f"removed by {holder} within {settings.analytics_refresh_seconds:g} s"


retention_app = typer.Typer(help="The retention of raw content (set per app with `tally apps set-retention`).",
                            no_args_is_help=True)


def apps_set_retention(
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    raw_days: Annotated[int | None, typer.Option(help="Days the texts and raw JSON of interactions are kept")] = None,
    uploads_days: Annotated[int | None, typer.Option(help="Days uploaded images are kept [default: --raw-days]")]
    = None,
    forever: Annotated[bool, typer.Option("--forever", help="Keep everything (the default)")] = False,
) -> None:
    """Set how long APP's raw content is kept. Every night (03:00 in the analytics time zone) one server removes
    the texts, raw JSON and images older than that; the numbers of every interaction stay, so usage, costs,
    sessions and every chart keep their full history."""
    if forever == (raw_days is not None):
        raise typer.BadParameter("give --raw-days N, or --forever")
    with store() as db:
        app = find_app(db, app_name)
        try:
            set_retention(app, raw_days=raw_days, uploads_days=uploads_days)
        except RetentionError as error:
            raise typer.BadParameter(error.message, param_hint=f"--{error.field.replace('_', '-')}") from None
        db.add(app)
        audit.record(db, actor=audit.cli_actor(), action="app.retention", target=app.name,
                     detail={"raw_days": raw_days, "uploads_days": uploads_days})
        typer.echo(f"{app_name}: {describe(app)}")


@retention_app.command("run")
def retention_run() -> None:
    """Remove now what the apps' retention says is due (the nightly pass does the same)."""
    settings = Settings()
    migrations.upgrade(settings)
    engine = build_engine(settings)
    try:
        removed = apply_retention(engine, now=int(time.time() * 1000), data_dir=settings.data_dir)
    finally:
        engine.dispose()
    typer.echo(f"the content of {removed.interactions} interactions and {removed.images} images removed "
               f"in {removed.seconds:.1f} s")
