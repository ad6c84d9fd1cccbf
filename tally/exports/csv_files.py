"""Writing a dataset as CSV, streamed in chunks or into a file that appears whole or not at all."""

import csv
import io
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Engine

from tally.analytics.filters import Filters
from tally.analytics.local_time import local_day
from tally.analytics.warehouse import Warehouse
from tally.exports.datasets import Columns, Dataset, Source

CHUNK_BYTES = 64 * 1024
# Prompts are user input: a cell a spreadsheet would read as a formula gets a leading apostrophe (OWASP's advice).
# Spreadsheets with East Asian input read the full-width forms as formula starts too.
FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ExportStopped(RuntimeError):
    """The server is shutting down: the export was abandoned before it finished."""


@dataclass
class Written:
    rows: int = 0
    bytes: int = 0


def defuse(text: str) -> str:
    return "'" + text if text and text[0] in FORMULA_STARTS else text


def download_name(dataset: str, f: Filters, zone: ZoneInfo) -> str:
    """`sessions_2026-11-01_2026-11-30.csv`: the range's first and last day in `zone`, the days `from` and `to` name."""
    first, last = (local_day(ms, zone.key).date().isoformat() for ms in (f.start_ms, f.end_ms - 1))
    return f"{dataset}_{first}_{last}.csv"


def iso_utc(ms: int) -> str:
    """`2026-11-24T13:05:00.123Z` for milliseconds since the epoch."""
    seconds = ms // 1000
    return f"{_hour(seconds // 3600)}{seconds % 3600 // 60:02d}:{seconds % 60:02d}.{ms % 1000:03d}Z"


@lru_cache(maxsize=4096)
def _hour(hours: int) -> str:
    # Rows come in time order, so most share their hour with the row before: a third of the cost of strftime.
    return f"{_EPOCH + timedelta(hours=hours):%Y-%m-%dT%H:}"


def _number(value):
    # DuckDB's exact DECIMAL costs, written in plain positional notation without trailing zeros.
    return format(value.normalize(), "f") if isinstance(value, Decimal) else value


def _day(value: date | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%d")


_FORMATS: dict[str, Callable | None] = {
    "int": None,  # the csv module writes ints as they are and None as an empty field
    "number": _number,
    "bool": lambda value: None if value is None else "true" if value else "false",
    "text": lambda value: None if value is None else defuse(value),
    "time": lambda value: None if value is None else iso_utc(value),
    "date": _day,
    "notes": lambda value: None if value is None else defuse(notes_text(value)),
}


def notes_text(notes_json: str) -> str:
    """`[{"field", "message"}]` as one cell: `field: message; field: message`."""
    return "; ".join(f"{note['field']}: {note['message']}" for note in orjson.loads(notes_json))


def _formatter(columns: Columns) -> Callable[[tuple], list]:
    """A function turning a row into its cells, touching only the columns that need more than `str()`."""
    steps = [(index, step) for index, (_, kind) in enumerate(columns) if (step := _FORMATS[kind]) is not None]

    def cells(row: tuple) -> list:
        out = list(row)
        for index, step in steps:
            out[index] = step(out[index])
        return out
    return cells


def csv_chunks(dataset: Dataset, pages: Iterable[list[tuple]], *, include_raw: bool, written: Written,
               should_stop: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """RFC 4180 CSV in UTF-8 chunks of about CHUNK_BYTES: one header row, CRLF line ends, quotes only if needed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(dataset.header(include_raw=include_raw))
    cells = _formatter(dataset.all_columns(include_raw=include_raw))
    _check(should_stop)
    for page in pages:
        _check(should_stop)
        writer.writerows(map(cells, page))
        written.rows += len(page)
        if buffer.tell() >= CHUNK_BYTES:
            yield _drain(buffer, written)
    yield _drain(buffer, written)


def _check(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise ExportStopped("the server is stopping; the export was abandoned")


def _drain(buffer: io.StringIO, written: Written) -> bytes:
    # A lone surrogate cannot reach the store, but if one did it becomes "?" rather than end the file halfway.
    chunk = buffer.getvalue().encode("utf-8", "replace")
    buffer.seek(0)
    buffer.truncate()
    written.bytes += len(chunk)
    return chunk


def stream_csv(dataset: Dataset, *, warehouse: Warehouse, engine: Engine, f: Filters, include_raw: bool = False,
               written: Written | None = None, should_stop: Callable[[], bool] | None = None) -> Iterator[bytes]:
    """The dataset's rows for `f` as CSV chunks, read from one snapshot of the warehouse, a page at a time."""
    written = written if written is not None else Written()
    with warehouse.snapshot() as cursor:
        pages = dataset.read(Source(cursor, engine, warehouse.timezone), f, include_raw)
        yield from csv_chunks(dataset, pages, include_raw=include_raw, written=written, should_stop=should_stop)


def write_atomically(path: Path, chunks: Iterable[bytes]) -> int:
    """Writes `chunks` to a hidden temporary file beside `path`, syncs it, then renames it over `path`: a reader
    sees the old file or the whole new one, never a part. Returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    size = 0
    try:
        with open(partial, "xb") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)  # makes the rename itself survive a crash
    return size


def _sync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
