"""Paged lists over DuckDB (users, sessions, interactions) with keyset cursors that stay stable under inserts."""

import duckdb

from tally.analytics.filters import Filters, encode_cursor
from tally.analytics.warehouse import fetch_dicts

USER_SORTS = {"tokens": "total_tokens", "cost": "cost", "last_seen": "last_seen", "interactions": "interactions"}


def _page(rows: list[dict], limit: int, key: tuple[str, str]) -> dict:
    """The first `limit` rows and, when there are more, the cursor that continues after the last one."""
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1][key[0]], rows[-1][key[1]]) if more else None
    return {"items": rows, "next_cursor": cursor}


def user_rows(*, app_id: int | None, within: Filters | None) -> tuple[str, list]:
    """A SELECT of users with their figures: lifetime ones, or with `within` only the users active in its range,
    every figure (interactions, tokens, cost, sessions, first and last seen) counting that range alone."""
    if within is None:
        sql = """
            WITH usage AS (SELECT user_id, sum(interactions) AS interactions, sum(total_tokens) AS total_tokens,
                                  sum(cost) AS cost, max(last_at) AS last_seen FROM user_day GROUP BY user_id),
                 visits AS (SELECT user_id, count(*) AS sessions, min(started_at) AS first_seen
                            FROM session_stats GROUP BY user_id)
            SELECT u.id, u.app_id, u.external_id AS user_id, u.email, u.first_name, u.last_name, u.is_authenticated,
                   coalesce(s.interactions, 0) AS interactions, coalesce(s.total_tokens, 0) AS total_tokens,
                   coalesce(s.cost, 0) AS cost, coalesce(s.last_seen, 0) AS last_seen, v.first_seen,
                   coalesce(v.sessions, 0) AS sessions
            FROM end_user u LEFT JOIN usage s ON s.user_id = u.id LEFT JOIN visits v ON v.user_id = u.id"""
        params: list = []
    else:
        where, params = interaction_where(within)
        sql = f"""
            WITH usage AS (SELECT user_id, count(*) AS interactions, coalesce(sum(total_tokens), 0) AS total_tokens,
                                  coalesce(sum(cost), 0) AS cost, max(request_at) AS last_seen,
                                  min(request_at) AS first_seen, count(DISTINCT session_id) AS sessions
                           FROM costed WHERE {where} GROUP BY user_id)
            SELECT u.id, u.app_id, u.external_id AS user_id, u.email, u.first_name, u.last_name, u.is_authenticated,
                   s.interactions, s.total_tokens, s.cost, s.last_seen, s.first_seen, s.sessions
            FROM end_user u JOIN usage s ON s.user_id = u.id"""
    if app_id is not None:
        sql += " WHERE u.app_id = ?"
        params = [*params, app_id]
    return sql, params


def users(cursor: duckdb.DuckDBPyConnection, *, app_id: int | None, search: str | None, sort: str,
          after: list | None, limit: int, within: Filters | None = None) -> dict:
    column = USER_SORTS[sort]
    source, params = user_rows(app_id=app_id, within=within)
    where = ["TRUE"]
    if search:
        where.append("(u.user_id ILIKE ? OR u.email ILIKE ? OR concat_ws(' ', u.first_name, u.last_name) ILIKE ?)")
        params += [f"%{search}%"] * 3
    if after is not None:
        where.append(f"({column}, u.id) < (?, ?)")
        params += after
    rows = fetch_dicts(cursor, f"SELECT * FROM ({source}) u WHERE {' AND '.join(where)} "
                               f"ORDER BY {column} DESC, u.id DESC LIMIT ?", [*params, limit + 1])
    return _page(rows, limit, (column, "id"))


SESSION_SELECT = """
    SELECT s.session_id AS id, s.app_id, c.external_id AS session, s.user_id, u.external_id AS user_external_id,
           u.email AS user_email, s.started_at, s.ended_at, s.duration_ms, s.turns, s.errors, s.total_tokens,
           s.cost, s.models
    FROM session_stats s LEFT JOIN chat_session c ON c.id = s.session_id LEFT JOIN end_user u ON u.id = s.user_id"""


def session_where(f: Filters) -> tuple[str, list]:
    """Sessions overlapping the range, of the app, user and model asked for."""
    where = ["s.ended_at >= ?", "s.started_at < ?"]
    params: list = [f.start_ms, f.end_ms]
    for column, value in (("s.app_id", f.app_id), ("s.user_id", f.user_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if f.model is not None:
        where.append("list_contains(string_split(s.models, ', '), ?)")
        params.append(f.model)
    return " AND ".join(where), params


def sessions(cursor: duckdb.DuckDBPyConnection, *, f: Filters, after: list | None, limit: int) -> dict:
    where, params = session_where(f)
    if after is not None:
        where += " AND (s.started_at, s.session_id) < (?, ?)"
        params += after
    rows = fetch_dicts(cursor, f"{SESSION_SELECT} WHERE {where} ORDER BY s.started_at DESC, s.session_id DESC "
                               f"LIMIT ?", [*params, limit + 1])
    return _page(rows, limit, ("started_at", "id"))


def interaction_where(f: Filters, session_id: int | None = None) -> tuple[str, list]:
    """Interactions requested in the range, of the app, provider, model, user and session asked for."""
    where = ["request_at >= ?", "request_at < ?"]
    params: list = [f.start_ms, f.end_ms]
    for column, value in (("app_id", f.app_id), ("provider", f.provider), ("model", f.model),
                          ("user_id", f.user_id), ("session_id", session_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return " AND ".join(where), params


def interactions(cursor: duckdb.DuckDBPyConnection, *, f: Filters, session_id: int | None, after: list | None,
                 limit: int) -> dict:
    where, params = interaction_where(f, session_id)
    if after is not None:
        where += " AND (request_at, id) < (?, ?)"
        params += after
    page = fetch_dicts(cursor, f"SELECT id FROM interaction WHERE {where} "
                         f"ORDER BY request_at DESC, id DESC LIMIT ?", [*params, limit + 1])
    if not page:
        return {"items": [], "next_cursor": None}
    ids = [row["id"] for row in page]
    rows = fetch_dicts(cursor, f"""
        SELECT id, app_id, user_id, session_id, provider, type, model, input_preview, prompt_tokens,
               completion_tokens, total_tokens, usage_source, cost, priced, finish_reason, request_at, latency_ms,
               is_error, image_count
        FROM costed WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY request_at DESC, id DESC""", ids)
    return _page(rows, limit, ("request_at", "id"))
