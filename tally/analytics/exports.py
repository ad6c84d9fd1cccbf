"""Writing a dataset as CSV, streamed in chunks or into a file that appears whole or not at all."""

import csv
import io
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine

from tally.analytics.export_datasets import Columns, Dataset, Source
from tally.analytics.filters import Filters
from tally.analytics.warehouse import Warehouse

CHUNK_BYTES = 64 * 1024
# Prompts are user input: a cell a spreadsheet would read as a formula gets a leading apostrophe (OWASP's advice).
FORMULA_STARTS = frozenset("=+-@\t\r")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ExportStopped(RuntimeError):
    """The server is shutting down: the export was abandoned before it finished."""


@dataclass
class Written:
    rows: int = 0
    bytes: int = 0


def defuse(text: str) -> str:
    return "'" + text if text and text[0] in FORMULA_STARTS else text


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
}


def _formatter(columns: Columns) -> Callable[[tuple], list]:
    """A function turning a row into its cells, touching only the columns that need more than `str()`."""
    steps = [(index, _FORMATS[kind]) for index, (_, kind) in enumerate(columns) if _FORMATS[kind] is not None]

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
