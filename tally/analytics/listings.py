"""Paged lists over DuckDB (users, sessions, interactions) with keyset cursors that stay stable under inserts."""

import duckdb

from tally.analytics.filters import INT, NUMBER, Filters, encode_cursor
from tally.analytics.local_time import day_bounds
from tally.analytics.warehouse import fetch_dicts
from tally.analytics.where import interaction_where, where

USER_SORTS = {"tokens": "total_tokens", "cost": "cost", "last_seen": "last_seen", "interactions": "interactions"}
# What each listing's cursor holds: its sort key, then the id that breaks ties.
USER_CURSORS = {sort: (NUMBER if sort == "cost" else INT, INT) for sort in USER_SORTS}
SESSION_CURSOR = INTERACTION_CURSOR = (INT, INT)
MODELS_SHOWN = 5  # of a session's models, in a listing; `models_more` counts the rest


def _page(rows: list[dict], limit: int, key: tuple[str, str]) -> dict:
    """The first `limit` rows and, when there are more, the cursor that continues after the last one."""
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1][key[0]], rows[-1][key[1]]) if more else None
    return {"items": rows, "next_cursor": cursor}


# A user's first session ever, and their sessions overlapping the range (the two parameters).
_VISITS = """SELECT user_id, min(started_at) AS first_seen,
                    count(*) FILTER (WHERE ended_at >= ? AND started_at < ?) AS sessions FROM session_stats"""


def users(cursor: duckdb.DuckDBPyConnection, *, f: Filters, zone: str, search: str | None, sort: str,
          after: list | None, limit: int) -> dict:
    """Users active in `f`'s range, with their usage there (the whole history for `filters.all_time`).

    The page is cut before its users' sessions are counted, so that the session rollup is read for one page of
    users, not for every user (at 10M interactions: 237 ms against 529 ms).
    """
    column = USER_SORTS[sort]
    usage_sql, params = _user_usage(f, zone)
    where = ["TRUE"]
    if search:
        where.append("(u.user_id ILIKE ? OR u.email ILIKE ? OR concat_ws(' ', u.first_name, u.last_name) ILIKE ?)")
        params += [f"%{search}%"] * 3
    if after is not None:
        where.append(f"({column}, u.id) < (?, ?)")
        params += after
    rows = fetch_dicts(cursor, f"""
        WITH {usage_sql},
        page AS (
            SELECT * FROM (
                SELECT u.id, u.app_id, u.external_id AS user_id, u.email, u.first_name, u.last_name,
                       u.is_authenticated, s.interactions, s.total_tokens, s.cost, s.unpriced, s.last_seen, s.sessions
                FROM end_user u JOIN usage s ON s.user_id = u.id) u
            WHERE {' AND '.join(where)} ORDER BY {column} DESC, u.id DESC LIMIT ?),
        visits AS ({_VISITS} WHERE user_id IN (SELECT id FROM page) GROUP BY user_id)
        SELECT p.* EXCLUDE (sessions), v.first_seen, coalesce(p.sessions, v.sessions, 0) AS sessions
        FROM page p LEFT JOIN visits v ON v.user_id = p.id ORDER BY {column} DESC, p.id DESC""",
        [*params, limit + 1, f.start_ms, f.end_ms])
    return _page(rows, limit, (column, "id"))


def user_rows(f: Filters, zone: str) -> tuple[str, list]:
    """A SELECT of every user active in `f`'s range with the figures `users` lists for them (for exports)."""
    usage_sql, params = _user_usage(f, zone)
    return f"""
        WITH {usage_sql},
        visits AS ({_VISITS} WHERE user_id IN (SELECT user_id FROM usage) GROUP BY user_id)
        SELECT u.id, u.app_id, u.external_id AS user_id, u.email, u.first_name, u.last_name, u.is_authenticated,
               v.first_seen, s.last_seen, coalesce(s.sessions, v.sessions, 0) AS sessions, s.interactions,
               s.total_tokens, s.cost, s.unpriced
        FROM end_user u JOIN usage s ON s.user_id = u.id LEFT JOIN visits v ON v.user_id = u.id""", [
        *params, f.start_ms, f.end_ms]


def _user_usage(f: Filters, zone: str) -> tuple[str, list]:
    """A `usage` CTE per user over `f`: from the day rollup (whole local days overlapping the range, like the
    other rollup answers) unless a provider or model is asked for, which only raw interactions carry. Only the
    raw path counts `sessions`; for the rollup path the session rollup counts them per page (NULL here)."""
    if f.provider is None and f.model is None:
        days = ("bucket >= ? AND bucket <= ?", [*day_bounds(f.start_ms, f.end_ms, zone)])
        sql, params = where(f, time=days, app="app_id", user="user_id").parts()
        return f"""usage AS (
            SELECT user_id, sum(interactions) AS interactions, sum(total_tokens) AS total_tokens,
                   sum(cost) AS cost, sum(unpriced) AS unpriced, max(last_at) AS last_seen, NULL AS sessions
            FROM user_day WHERE {sql} GROUP BY user_id)""", params
    sql, params = interaction_where(f).parts()
    return f"""usage AS (
        SELECT user_id, count(*) AS interactions, coalesce(sum(total_tokens), 0) AS total_tokens,
               coalesce(sum(cost), 0) AS cost, count(*) FILTER (WHERE NOT priced) AS unpriced,
               max(request_at) AS last_seen, count(DISTINCT session_id) AS sessions
        FROM costed WHERE {sql} GROUP BY user_id)""", params


SESSION_SELECT = """
    SELECT s.session_id AS id, s.app_id, c.external_id AS session, s.user_id, u.external_id AS user_external_id,
           u.email AS user_email, s.started_at, s.ended_at, s.duration_ms, s.turns, s.errors, s.total_tokens,
           s.cost, s.models, s.unpriced
    FROM session_stats s LEFT JOIN chat_session c ON c.id = s.session_id LEFT JOIN end_user u ON u.id = s.user_id"""


def session_where(f: Filters) -> tuple[str, list]:
    """Sessions overlapping the range, of the app, user, model and provider asked for."""
    overlap = ("s.ended_at >= ? AND s.started_at < ?", [f.start_ms, f.end_ms])
    return where(f, time=overlap, app="s.app_id", user="s.user_id",
                 model="list_contains(string_split(s.models, ', '), ?)",
                 provider="EXISTS (SELECT 1 FROM interaction i WHERE i.session_id = s.session_id AND i.provider = ?)",
                 ).parts()


# A session may have used thousands of models (each turn may name another): a listing names the first few.
_SESSION_LIST_SELECT = SESSION_SELECT.replace("s.models,", f"""
    array_to_string(list_slice(string_split(s.models, ', '), 1, {MODELS_SHOWN}), ', ') AS models,
    coalesce(greatest(len(string_split(s.models, ', ')) - {MODELS_SHOWN}, 0), 0) AS models_more,""")


def sessions(cursor: duckdb.DuckDBPyConnection, *, f: Filters, after: list | None, limit: int) -> dict:
    where, params = session_where(f)
    if after is not None:
        where += " AND (s.started_at, s.session_id) < (?, ?)"
        params += after
    rows = fetch_dicts(cursor, f"{_SESSION_LIST_SELECT} WHERE {where} "
                               f"ORDER BY s.started_at DESC, s.session_id DESC LIMIT ?", [*params, limit + 1])
    return _page(rows, limit, ("started_at", "id"))


def interactions(cursor: duckdb.DuckDBPyConnection, *, f: Filters, session_id: int | None, after: list | None,
                 limit: int) -> dict:
    where, params = interaction_where(f, session_id).parts()
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
               is_error, image_count, malformed
        FROM costed WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY request_at DESC, id DESC""", ids)
    return _page(rows, limit, ("request_at", "id"))
