"""The export datasets: their columns in a fixed order, the filters each takes, and their rows read page by page."""

from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from operator import itemgetter

import duckdb
from sqlalchemy import Engine, select

from tally.analytics.filters import Filters
from tally.analytics.listings import SESSION_SELECT, session_where, user_rows
from tally.analytics.queries import Queries
from tally.analytics.where import interaction_where
from tally.store.models import Interaction, table_of

PAGE_ROWS = 2000
RAW_SLICE_ROWS = 200  # raw request and response JSON can be large: fewer of them read from the store at once

# Column kinds, which decide how a value is written: int and number unformatted, time as ISO 8601 UTC with a Z,
# date as YYYY-MM-DD, bool as true/false, text defused against formula injection.
Columns = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Source:
    warehouse: duckdb.DuckDBPyConnection  # inside one read transaction (`Warehouse.snapshot`)
    store: Engine
    timezone: str


@dataclass(frozen=True)
class Dataset:
    name: str
    columns: Columns
    filters: frozenset[str]  # the query parameters it takes, besides `from` and `to`
    read: Callable[[Source, Filters, bool], Iterator[list[tuple]]]  # pages of rows, in `columns` order
    raw_columns: Columns = ()  # appended when raw JSON is asked for

    def header(self, *, include_raw: bool) -> list[str]:
        return [name for name, _ in self.all_columns(include_raw=include_raw)]

    def all_columns(self, *, include_raw: bool) -> Columns:
        return self.columns + (self.raw_columns if include_raw else ())


def _pages(cursor: duckdb.DuckDBPyConnection, sql: str, where: str, params: list, keys: tuple[str, ...],
           positions: tuple[int, ...], size: int | None = None) -> Iterator[list[tuple]]:
    """Pages of `sql WHERE where`, ordered by `keys` and continued after the last row's key (at `positions`).

    Each page is a query of its own with a LIMIT, so memory holds one page whatever the dataset's size."""
    size = size or PAGE_ROWS
    after: tuple | None = None
    order = ", ".join(keys)
    while True:
        page_where, page_params = where, params
        if after is not None:
            # The first key alone is a plain comparison DuckDB can check against each row group's min and max.
            page_where += f" AND {keys[0]} >= ? AND ({order}) > ({', '.join('?' * len(keys))})"
            page_params = [*params, after[0], *after]
        rows = cursor.execute(f"{sql} WHERE {page_where} ORDER BY {order} LIMIT {size}", page_params).fetchall()
        if rows:
            yield rows
        if len(rows) < size:
            return
        after = tuple(rows[-1][i] for i in positions)


INTERACTION_COLUMNS: Columns = (
    ("id", "int"), ("request_at", "time"), ("response_at", "time"), ("app_id", "int"), ("user_id", "int"),
    ("session_id", "int"), ("provider", "text"), ("type", "text"), ("model", "text"), ("input_text", "text"),
    ("output_text", "text"), ("prompt_tokens", "int"), ("cached_prompt_tokens", "int"),
    ("completion_tokens", "int"), ("total_tokens", "int"), ("usage_source", "text"), ("cost", "number"),
    ("priced", "bool"), ("finish_reason", "text"), ("latency_ms", "int"), ("image_count", "int"),
    ("is_error", "bool"), ("response_ref", "text"), ("client_version", "text"), ("received_at", "time"),
    ("malformed", "notes"),
)
RAW_COLUMNS: Columns = (("request_json", "text"), ("response_json", "text"))
# Full texts and what DuckDB does not hold come from the store; the rest, cost included, from the warehouse.
_FROM_STORE = ("input_text", "output_text", "response_ref", "client_version", "received_at", "malformed")
_FROM_WAREHOUSE = tuple(name for name, _ in INTERACTION_COLUMNS if name not in _FROM_STORE)


def _interactions(source: Source, f: Filters, include_raw: bool) -> Iterator[list[tuple]]:
    """Ids are paged in DuckDB in (request_at, id) order; each page's costed rows and store rows are joined by id."""
    stored = _FROM_STORE + tuple(name for name, _ in RAW_COLUMNS if include_raw)
    table = table_of(Interaction)
    store_query = select(table.c.id, *(table.c[name] for name in stored))
    combined = _FROM_WAREHOUSE + stored  # a warehouse row followed by its store row, minus the store's id
    pick = itemgetter(*(combined.index(name) for name, _ in INTERACTION_COLUMNS + (RAW_COLUMNS if include_raw else ())))
    where, params = interaction_where(f).parts()
    cursor, slice_rows = source.warehouse, RAW_SLICE_ROWS if include_raw else PAGE_ROWS
    for page in _pages(cursor, "SELECT request_at, id FROM interaction", where, params, ("request_at", "id"),
                       (0, 1)):
        ids = [row[1] for row in page]
        # The time bounds let DuckDB skip row groups before it prices rows; the ids alone would price them all.
        costed = cursor.execute(f"SELECT {', '.join(_FROM_WAREHOUSE)} FROM costed WHERE request_at BETWEEN ? AND ? "
                                f"AND id IN (SELECT unnest(?)) ORDER BY request_at, id",
                                [page[0][0], page[-1][0], ids]).fetchall()
        for start in range(0, len(costed), slice_rows):
            part = costed[start:start + slice_rows]
            with source.store.connect() as connection:
                found = connection.execute(store_query.where(table.c.id.in_([row[0] for row in part])))
                texts = {row[0]: tuple(row[1:]) for row in found}
            # An id missing from the store was deleted after the warehouse's last refresh: it is left out.
            yield [pick(row + texts[row[0]]) for row in part if row[0] in texts]


SESSION_COLUMNS: Columns = (
    ("id", "int"), ("app_id", "int"), ("session", "text"), ("user_id", "int"), ("user_external_id", "text"),
    ("user_email", "text"), ("started_at", "time"), ("ended_at", "time"), ("duration_ms", "int"), ("turns", "int"),
    ("errors", "int"), ("total_tokens", "int"), ("cost", "number"), ("models", "text"), ("unpriced", "int"),
)


def _sessions(source: Source, f: Filters, _: bool) -> Iterator[list[tuple]]:
    where, params = session_where(f)
    yield from _pages(source.warehouse, SESSION_SELECT, where, params, ("s.started_at", "s.session_id"), (6, 0))


USER_COLUMNS: Columns = (
    ("id", "int"), ("app_id", "int"), ("user_id", "text"), ("email", "text"), ("first_name", "text"),
    ("last_name", "text"), ("is_authenticated", "bool"), ("first_seen", "time"), ("last_seen", "time"),
    ("sessions", "int"), ("interactions", "int"), ("total_tokens", "int"), ("cost", "number"), ("unpriced", "int"),
)


def _users(source: Source, f: Filters, _: bool) -> Iterator[list[tuple]]:
    users, params = user_rows(f, source.timezone)
    sql = f"SELECT {', '.join(name for name, _ in USER_COLUMNS)} FROM ({users}) u"
    yield from _pages(source.warehouse, sql, "TRUE", params, ("id",), (0,))


DAILY_USAGE_COLUMNS: Columns = (
    ("day", "date"), ("app_id", "int"), ("provider", "text"), ("model", "text"), ("interactions", "int"),
    ("errors", "int"), ("prompt_tokens", "int"), ("completion_tokens", "int"), ("reported_tokens", "int"),
    ("estimated_tokens", "int"), ("absent_usage", "int"), ("cost", "number"), ("estimated_cost", "number"),
    ("priced", "int"), ("unpriced", "int"),
)


def _daily_usage(source: Source, f: Filters, _: bool) -> Iterator[list[tuple]]:
    """The same rows as `/api/v1/usage?granularity=day` per app, provider and model: whole days from the rollup,
    or, filtered by user, that user's interactions in the range."""
    usage, params = Queries(source.warehouse, source.timezone).usage_sql(f, "day", ("app_id", "provider", "model"))
    names = ", ".join(name for name, _ in DAILY_USAGE_COLUMNS[1:])
    sql = f"SELECT bucket, {names} FROM ({usage}) d"
    yield from _pages(source.warehouse, sql, "TRUE", params, ("bucket", "app_id", "provider", "model"), (0, 1, 2, 3))


DATASETS = {dataset.name: dataset for dataset in (
    Dataset("interactions", INTERACTION_COLUMNS, frozenset({"app", "provider", "model", "user"}), _interactions,
            RAW_COLUMNS),
    Dataset("sessions", SESSION_COLUMNS, frozenset({"app", "provider", "model", "user"}), _sessions),
    Dataset("users", USER_COLUMNS, frozenset({"app", "provider", "model", "user"}), _users),
    Dataset("daily_usage", DAILY_USAGE_COLUMNS, frozenset({"app", "provider", "model", "user"}), _daily_usage),
)}


class DatasetError(ValueError):
    """An unknown dataset, or a filter or option the dataset does not take; `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def find_dataset(name: str, *, filters: AbstractSet[str] = frozenset(), include_raw: bool = False) -> Dataset:
    """The dataset called `name`, checked against the filters given (the names of the query parameters set)."""
    dataset = DATASETS.get(name)
    if dataset is None:
        raise DatasetError("dataset", f"unknown dataset {name!r}; use one of: {', '.join(DATASETS)}")
    unknown = sorted(filters - dataset.filters - {"from", "to"})
    if unknown:
        raise DatasetError(unknown[0], f"{dataset.name} cannot be filtered by {unknown[0]}")
    if include_raw and not dataset.raw_columns:
        raise DatasetError("include_raw", f"{dataset.name} has no raw JSON; only interactions do")
    return dataset
