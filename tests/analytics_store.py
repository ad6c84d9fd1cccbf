"""Rows written straight into a migrated store, as ingest writes them, and then changed by hand, as an operator or
an older Tally might have left them."""

import time

from sqlalchemy import text

from tally.ingest.batch import store_batch
from tally.ingest.keys import VerifiedApp
from tally.ingest.prepare import prepare
from tally.ingest.wire import TrackPayload
from tally.store.secrets import now_ms
from tests.payloads import openai_chat

BASE = 1_717_000_000_000  # 2024-05-29T16:26:40Z


def app_id_of(engine, keys) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT id FROM app WHERE app_key = :k"), {"k": keys.app_key}).scalar_one()


def store(engine, keys, count: int = 1, *, at_ms: int = BASE, **options) -> list[int]:
    """`count` OpenAI chats of one user, a second apart; returns their interaction ids."""
    jobs = [prepare(TrackPayload.model_validate(openai_chat(keys, at_ms=at_ms + 1000 * i, **options)),
                    app=VerifiedApp(app_id_of(engine, keys), None), received_at=now_ms(), default_timeout_minutes=10)
            for i in range(count)]
    with engine.begin() as conn:
        return [stored.interaction_id for stored in store_batch(conn, jobs)]


def change(engine, interaction_id: int, *, stamp: bool = True, **values) -> None:
    """Sets columns of one stored interaction; `stamp` marks it changed now, as Tally does when it changes a row."""
    if stamp:
        time.sleep(0.002)  # a stamp later than the one the row had
        values["updated_at"] = now_ms()
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE interaction SET {', '.join(f'{name} = :{name}' for name in values)} WHERE id = :id"),
                     {**values, "id": interaction_id})
