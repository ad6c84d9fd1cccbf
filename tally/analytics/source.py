"""Reading the relational store as Arrow tables (no DuckDB extension download is needed)."""

import sqlite3

import pyarrow

BATCH_ROWS = 100_000

INTERACTION_COLUMNS = """id, app_id, user_id, session_id, provider, type, model, prompt_tokens,
    cached_prompt_tokens, completion_tokens, total_tokens, usage_source, finish_reason, request_at, response_at,
    latency_ms, image_count, is_error, updated_at, substr(input_text, 1, 200) AS input_preview"""
USER_COLUMNS = "id, app_id, external_id, email, first_name, last_name, is_authenticated, created_at, updated_at"


class StoreReader:
    """Runs SELECTs on the store and hands back Arrow tables; integers in the SQL are ours, never user input.

    PostgreSQL is read through ADBC, which hands over Arrow batches directly. SQLite is read through Python's
    own sqlite3: ADBC bundles a second SQLite library, and two SQLite copies in one process release each
    other's POSIX locks on the WAL file, which corrupts reads while the server writes (`disk I/O error`).
    """

    def __init__(self, database_url: str) -> None:
        self._url = database_url

    def query(self, sql: str) -> pyarrow.Table:
        if self._url.startswith("sqlite"):
            return _sqlite_query(self._url.split(":///", 1)[1], sql)
        import adbc_driver_postgresql.dbapi as driver

        with driver.connect(_libpq_url(self._url)) as connection, connection.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetch_arrow_table()

    def changed_interactions(self, since_ms: int, after_id: int) -> pyarrow.Table:
        """Up to BATCH_ROWS interactions changed at or after `since_ms`, in (updated_at, id) order."""
        return self.query(
            f"SELECT {INTERACTION_COLUMNS} FROM interaction "
            f"WHERE updated_at > {int(since_ms)} OR (updated_at = {int(since_ms)} AND id > {int(after_id)}) "
            f"ORDER BY updated_at, id LIMIT {BATCH_ROWS}")

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

    def interaction_count(self) -> int:
        return self.query("SELECT count(*) AS n FROM interaction").column(0)[0].as_py()

    def interaction_ids(self) -> pyarrow.Table:
        return self.query("SELECT id FROM interaction")


def _sqlite_query(path: str, sql: str) -> pyarrow.Table:
    connection = sqlite3.connect(path, timeout=30)
    try:
        cursor = connection.execute(sql)
        names = [column[0] for column in cursor.description]
        columns = list(zip(*cursor.fetchall())) or [()] * len(names)
    finally:
        connection.close()
    return pyarrow.table({name: pyarrow.array(values) for name, values in zip(names, columns)})


def _libpq_url(url: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url
