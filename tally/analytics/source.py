"""Reading the relational store as Arrow tables (no DuckDB extension download is needed)."""

import sqlite3
import threading
from contextlib import suppress

import pyarrow

BATCH_ROWS = 100_000

INTERACTION_COLUMNS = """id, app_id, user_id, session_id, provider, type, model, prompt_tokens,
    cached_prompt_tokens, completion_tokens, total_tokens, usage_source, finish_reason, request_at, response_at,
    latency_ms, image_count, is_error, updated_at, substr(input_text, 1, 200) AS input_preview,
    malformed IS NOT NULL AS malformed"""
USER_COLUMNS = "id, app_id, external_id, email, first_name, last_name, is_authenticated, created_at, updated_at"


class StoreReader:
    """Runs SELECTs on the store and hands back Arrow tables; integers in the SQL are ours, never user input.

    PostgreSQL is read through ADBC, which hands over Arrow batches directly. SQLite is read through Python's
    own sqlite3: ADBC bundles a second SQLite library, and two SQLite copies in one process release each
    other's POSIX locks on the WAL file, which corrupts reads while the server writes (`disk I/O error`).
    """

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._lock = threading.Lock()
        # PostgreSQL: kept open between refreshes (setting one up costs ~50 ms, several times a tick), in
        # autocommit so that no transaction stays open; a failure closes it, and the next query opens another.
        self._connection = None

    def query(self, sql: str) -> pyarrow.Table:
        if self._url.startswith("sqlite"):
            return _sqlite_query(self._url.split(":///", 1)[1], sql)
        import adbc_driver_postgresql.dbapi as driver

        with self._lock:
            try:
                connection = self._connection
                if connection is None:
                    connection = self._connection = driver.connect(_libpq_url(self._url), autocommit=True)
                with connection.cursor() as cursor:
                    cursor.execute(sql)
                    return cursor.fetch_arrow_table()
            except BaseException:
                self._disconnect()
                raise

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with suppress(Exception):  # already broken: nothing left to release
                connection.close()

    def changed_interactions(self, since_ms: int, after_id: int, *, seen_id: int = 0) -> pyarrow.Table:
        """Up to BATCH_ROWS interactions changed at or after `since_ms`, in (updated_at, id) order. On SQLite,
        whose one writer hands out ids in commit order, a row up to `seen_id` (the highest the warehouse holds)
        that was not changed after it was stored is known already and left out: under load the overlap would
        otherwise send the last seconds' rows again at every refresh."""
        known = ""
        if self._url.startswith("sqlite") and seen_id > 0:
            known = f"AND (id > {int(seen_id)} OR updated_at <> received_at) "
        return self.query(
            f"SELECT {INTERACTION_COLUMNS} FROM interaction "
            f"WHERE (updated_at > {int(since_ms)} OR (updated_at = {int(since_ms)} AND id > {int(after_id)})) "
            f"{known}ORDER BY updated_at, id LIMIT {BATCH_ROWS}")

    def changed_users(self, since_ms: int, after_id: int) -> pyarrow.Table:
        return self.query(
            f"SELECT {USER_COLUMNS} FROM end_user "
            f"WHERE updated_at > {int(since_ms)} OR (updated_at = {int(since_ms)} AND id > {int(after_id)}) "
            f"ORDER BY updated_at, id LIMIT {BATCH_ROWS}")

    def new_sessions(self, after_id: int) -> pyarrow.Table:
        return self.query(f"SELECT id, app_id, external_id FROM interaction_session WHERE id > {int(after_id)} "
                          f"ORDER BY id LIMIT {BATCH_ROWS}")

    def apps(self) -> pyarrow.Table:
        return self.query("SELECT id, name FROM app")

    def erasures(self, after_id: int) -> pyarrow.Table:
        """The erasures recorded after `after_id`: the ids of the end users and sessions each removed, as JSON."""
        return self.query(f"SELECT id, CAST(user_ids AS TEXT) AS user_ids, CAST(session_ids AS TEXT) AS session_ids "
                          f"FROM erasure WHERE id > {int(after_id)} ORDER BY id")

    def interaction_ranges(self, width: int) -> pyarrow.Table:
        """Per range of `width` ids (the quotient truncated, as SQL truncates): the count and the sum of the ids'
        offsets in it, which cannot overflow. `id - id % width` divides exactly in every SQL dialect."""
        w = int(width)
        return self.query(f"SELECT CAST((id - id % {w}) / {w} AS BIGINT) AS part, count(*) AS n, "
                          f"CAST(sum(id % {w}) AS BIGINT) AS offsets FROM interaction GROUP BY 1")

    def interaction_ids_in(self, width: int, part: int) -> pyarrow.Table:
        """The ids of one range of `interaction_ranges`; the bounds enclose it (either sign) for the index."""
        width, part = int(width), int(part)
        return self.query(f"SELECT id FROM interaction WHERE id > {(part - 1) * width} "
                          f"AND id < {(part + 1) * width} AND id - id % {width} = {part * width}")

    def interactions_by_id(self, ids: list[int]) -> pyarrow.Table:
        return self.query(f"SELECT {INTERACTION_COLUMNS} FROM interaction "
                          f"WHERE id IN ({', '.join(str(int(i)) for i in ids)}) ORDER BY id")


def _sqlite_query(path: str, sql: str) -> pyarrow.Table:
    connection = sqlite3.connect(path, timeout=30)
    try:
        cursor = connection.execute(sql)
        names = [column[0] for column in cursor.description]
        columns = list(zip(*cursor.fetchall())) or [()] * len(names)
    finally:
        connection.close()
    return pyarrow.table({name: _column(values) for name, values in zip(names, columns)})


def _column(values: tuple) -> pyarrow.Array:
    """SQLite keeps any value in any column (text or a REAL in an INTEGER column): a column whose values Arrow
    cannot give one type goes over as text, and the sync's TRY_CAST decides what is readable."""
    try:
        return pyarrow.array(values)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError, OverflowError):
        return pyarrow.array([None if v is None else v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                              for v in values], pyarrow.string())


def _libpq_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url
