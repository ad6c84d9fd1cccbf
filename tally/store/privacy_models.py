"""The tables of the data lifecycle: erasures for every server's analytics to follow, and the nightly retention
passes, one replica's claim per day."""

from sqlalchemy import JSON, Column, Unicode
from sqlmodel import Field, SQLModel

from tally.store.types import BigId, millis, primary_key


class Erasure(SQLModel, table=True):
    """A person erased from an app: the internal ids of the end users and sessions removed, for each server to
    remove from its DuckDB file too (the store's rows are gone already). Holds no personal data."""

    __tablename__ = "erasure"

    id: int | None = primary_key()
    app_id: int = Field(sa_column=Column(BigId, nullable=False))  # no foreign key: the app may be deleted later
    user_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    session_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    at: int = millis()


class RetentionRun(SQLModel, table=True):
    """The nightly retention pass of one day (in the analytics time zone): the replica that inserted the row runs
    it, the others skip that day."""

    __tablename__ = "retention_run"

    day: str = Field(sa_column=Column(Unicode(10), primary_key=True))
    replica: str = Field(sa_column=Column(Unicode(200), nullable=False))
    started_at: int = millis()
    finished_at: int | None = millis(nullable=True)
    interactions: int | None = None  # whose content was removed
    images: int | None = None  # whose files were removed
