"""The `tally export` and `tally exports` commands: a CSV on demand, and the schedules the server runs."""

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from tally.analytics.filters import FilterError, parse_filters
from tally.analytics.service import Analytics, WarehouseBusy
from tally.exports.csv_files import CHUNK_BYTES, Written, stream_csv, write_atomically
from tally.exports.datasets import DATASETS, DatasetError, find_dataset
from tally.exports.schedules import ScheduleError, add_schedule, list_schedules, recent_runs, remove_schedule
from tally.server import migrations
from tally.server.cli_store import utc_minute
from tally.server.instance import client_url, running
from tally.store import audit
from tally.store.engine import build_engine, writing
from tally.store.models import App, ReadToken
from tally.store.read_tokens import create_read_token
from tally.store.secrets import hash_secret, now_ms
from tally.store.settings import Settings

exports_app = typer.Typer(help="Scheduled CSV exports, run by the server.", no_args_is_help=True)
schedule_app = typer.Typer(help="Export schedules.", no_args_is_help=True)
exports_app.add_typer(schedule_app, name="schedule")

AppOption = Annotated[str | None, typer.Option("--app", help="Only this app's rows: its name or id")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]


@contextmanager
def _store() -> Iterator[tuple[Settings, Engine]]:
    settings = Settings()
    migrations.upgrade(settings)
    engine = build_engine(settings)
    try:
        yield settings, engine
    except (ScheduleError, DatasetError, FilterError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


def _app_id(db: Session, text: str | None) -> int | None:
    if text is None:
        return None
    app = db.exec(select(App).where(App.name == text)).first() or (db.get(App, int(text)) if text.isdigit() else None)
    if app is None:
        raise ScheduleError("app", f"no app named {text!r}")
    return app.id


def export(
    dataset: Annotated[str, typer.Argument(help=f"One of: {', '.join(DATASETS)}")],
    output: Annotated[str, typer.Option("-o", "--output", help="The CSV file to write; - for stdout")],
    start: Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD (local day), ISO datetime or epoch ms "
                                                                 "[default: 30 days ago]")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End, exclusive; a YYYY-MM-DD includes that day")] = None,
    app: AppOption = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider (not for sessions)")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model")] = None,
    user: Annotated[str | None, typer.Option(help="Only this end user (an id from the read API)")] = None,
    include_raw: Annotated[bool, typer.Option(help="Interactions only: add the raw request and response JSON")] = False,
) -> None:
    """Export a dataset as CSV: the same rows as GET /api/v1/exports/DATASET.csv."""
    with _store() as (settings, engine):
        with Session(engine) as db:
            app_id = _app_id(db, app)
        filters = {"app": app_id, "provider": provider, "model": model, "user": user}
        definition = find_dataset(dataset, filters={k for k, v in filters.items() if v is not None},
                                  include_raw=include_raw)
        f = parse_filters(start=start, end=end, app=None if app_id is None else str(app_id), provider=provider,
                          model=model, user=user, zone=ZoneInfo(settings.analytics_timezone), now_ms=now_ms(),
                          apps=None)
        try:
            analytics = Analytics(settings)
        except WarehouseBusy:
            query = {"from": start, "to": end, **filters, "include_raw": "true" if include_raw else None}
            size = _through_server(settings, engine, dataset, {k: v for k, v in query.items() if v is not None},
                                   output)
            typer.echo(f"exported {size:,} bytes through the running server", err=True)
            return
        try:
            analytics.refresh()  # a CLI export is exact: whatever the store holds now
            written = Written()
            _write(output, stream_csv(definition, warehouse=analytics.warehouse, engine=engine, f=f,
                                      include_raw=include_raw, written=written))
        finally:
            analytics.close()
        typer.echo(f"exported {written.rows:,} rows ({written.bytes:,} bytes)", err=True)


def _write(output: str, chunks: Iterable[bytes]) -> None:
    if output == "-":
        stdout = typer.get_binary_stream("stdout")
        for chunk in chunks:
            stdout.write(chunk)
        stdout.flush()
    else:
        write_atomically(Path(output), chunks)


def _through_server(settings: Settings, engine: Engine, dataset: str, query: dict, output: str) -> int:
    """While a server holds the DuckDB file (one process at a time may open it), the export streams from that
    server's API, with a read token made for this one request."""
    server = running(settings)
    base = server.url if server is not None else client_url(settings)
    url = f"{base}/api/v1/exports/{dataset}.csv?{urllib.parse.urlencode(query)}"
    with Session(engine) as db:
        token = create_read_token(db, name="tally export (temporary)")
        db.commit()
    size = 0

    def counted(response) -> Iterator[bytes]:
        nonlocal size
        while chunk := response.read(CHUNK_BYTES):
            size += len(chunk)
            yield chunk
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}),
                                    timeout=300) as response:
            _write(output, counted(response))
    except urllib.error.HTTPError as error:
        typer.echo(f"error: {json.loads(error.read() or b'{}').get('message', error.reason)}", err=True)
        raise typer.Exit(1) from None
    except urllib.error.URLError as error:
        typer.echo(f"error: {settings.analytics_path} is held by another process, and no Tally server answers at "
                   f"{base} ({error.reason}); start the server with `tally serve`, or stop the process that holds "
                   "the file", err=True)
        raise typer.Exit(1) from None
    finally:
        with Session(engine) as db:
            db.exec(delete(ReadToken).where(col(ReadToken.token_hash) == hash_secret(token)))
            db.commit()
    return size


@schedule_app.command("add")
def schedule_add(
    dataset: Annotated[str, typer.Argument(help=f"One of: {', '.join(DATASETS)}")],
    cron: Annotated[str, typer.Option(help='A 5-field crontab, e.g. "0 2 * * *" (nightly at 02:00)')],
    app: AppOption = None,
    timezone: Annotated[str | None, typer.Option(help="IANA zone of the crontab and periods "
                                                          "[default: TALLY_ANALYTICS_TIMEZONE]")] = None,
    directory: Annotated[str | None, typer.Option(
        "--dir", help="Folder, absolute or relative to the exports folder (TALLY_EXPORTS_DIR) [default: that folder]"
    )] = None,
    include_raw: Annotated[bool, typer.Option(help="Interactions only: add the raw request and response")] = False,
    as_json: JsonOption = False,
) -> None:
    """Add a schedule; a running server takes it up within TALLY_EXPORT_SYNC_SECONDS."""
    with _store() as (settings, engine), Session(writing(engine)) as db:
        added = add_schedule(db, dataset=dataset, cron=cron, timezone_name=timezone or settings.analytics_timezone,
                             app_id=_app_id(db, app), directory=directory, include_raw=include_raw,
                             exports_dir=settings.exports_folder, now_ms=now_ms(),
                             actor=audit.cli_actor(), apps=None)
        db.commit()
        [shown] = [s for s in list_schedules(db, apps=None) if s["id"] == added.id]
    typer.echo(json.dumps(shown) if as_json else f"added schedule {added.id}: {_describe(shown)}")


@schedule_app.command("list")
def schedule_list(as_json: JsonOption = False) -> None:
    """List the schedules with their next and last runs."""
    with _store() as (_, engine), Session(engine) as db:
        shown = list_schedules(db, apps=None)
    if as_json:
        typer.echo(json.dumps(shown))
        return
    for schedule in shown:
        last = schedule["last_run"]
        typer.echo(f"{schedule['id']:>4}  {_describe(schedule)}\n      next {utc_minute(schedule['next_run_at'])}, "
                   + (f"last {last['status']} {utc_minute(last['started_at'])}" if last else "last never"))


@schedule_app.command("remove")
def schedule_remove(schedule_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Remove a schedule and its run history (its files stay)."""
    with _store() as (_, engine), Session(writing(engine)) as db:
        if not remove_schedule(db, schedule_id=schedule_id, actor=audit.cli_actor(), apps=None):
            raise ScheduleError("id", f"no export schedule {schedule_id}")
        db.commit()
    typer.echo(f"removed schedule {schedule_id}")


@exports_app.command("runs")
def runs(schedule_id: Annotated[int | None, typer.Option("--schedule", help="Only this schedule's runs")] = None,
         limit: Annotated[int, typer.Option(min=1, help="How many, newest first")] = 20, as_json: JsonOption = False,
         ) -> None:
    """Show the latest export runs."""
    with _store() as (_, engine), Session(engine) as db:
        shown = recent_runs(db, schedule_id=schedule_id, limit=limit, apps=None)
    if as_json:
        typer.echo(json.dumps(shown))
        return
    for run in shown:
        outcome = f"{run['rows']:,} rows, {run['bytes']:,} bytes" if run["status"] == "succeeded" else run["error"]
        typer.echo(f"{run['id']:>5}  schedule {run['schedule_id']}  {run['period']:<13} {run['status']:<9} "
                   f"{utc_minute(run['started_at'])}  {run['file']}\n       {outcome or ''}")


def _describe(schedule: dict) -> str:
    return (f"{schedule['dataset']} of {schedule['app'] or 'all apps'}, \"{schedule['cron']}\" {schedule['timezone']}"
            f" (each run exports the previous {schedule['period']}) into {schedule['directory']}")



