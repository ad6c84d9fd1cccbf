"""Many rows in few statements: the storing transaction's inserts and updates.

On PostgreSQL, a multi-row `INSERT … VALUES … RETURNING` is a new statement text for every batch size, which
the driver parses anew each time (a third of the storage process's time, measured); so ids are drawn from the
table's sequence in one statement and the rows go in with COPY. SQLite has no COPY and no round trips to save:
there the insert is SQLAlchemy's, returning ids in the order of the rows.
"""

from collections.abc import Sequence
from functools import cache

from sqlalchemy import Connection, Table, insert, text


def insert_rows(connection: Connection, table: Table, rows: list[dict]) -> list[int]:
    """Insert `rows` (dicts with the same keys, column names of `table`) and return their new ids, in order."""
    if not rows:
        return []
    if connection.dialect.name != "postgresql":
        return list(connection.execute(_insert_returning_ids(table), rows).scalars())
    ids = sorted(connection.execute(_draw_ids(table.name), {"n": len(rows)}).scalars())
    names = list(rows[0])
    driver = connection.connection.driver_connection  # the transaction's own connection: COPY joins it
    assert driver is not None  # a connection inside a transaction is checked out
    with driver.cursor() as cursor, cursor.copy(_copy_statement(table.name, tuple(names))) as copy:
        for new_id, row in zip(ids, rows):
            copy.write_row((new_id, *(row[name] for name in names)))
    return ids


def update_rows(connection: Connection, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
    """`UPDATE table SET column = …, … WHERE id = …` for each row (its values in `columns` order, then its id),
    through the driver's own executemany: for many small updates, SQLAlchemy's per-row parameter handling costs
    more than the updates themselves. `table` and `columns` are names from our models, never input."""
    mark = "?" if connection.dialect.name == "sqlite" else "%s"
    connection.exec_driver_sql(f"UPDATE {table} SET {', '.join(f'{name} = {mark}' for name in columns)} "
                               f"WHERE id = {mark}", rows)


@cache
def _insert_returning_ids(table: Table):
    return insert(table).returning(table.c.id, sort_by_parameter_order=True)


@cache
def _draw_ids(table: str):
    # One statement text whatever the count: the driver prepares it once. Ids come out ascending, as the
    # sequence hands them out; sorted anyway, since SQL promises no order without ORDER BY.
    return text(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, :n)")


@cache
def _copy_statement(table: str, names: tuple[str, ...]) -> str:
    return f"COPY {table} (id, {', '.join(names)}) FROM STDIN"
