"""Portable column types (the only place where the table definitions differ by dialect) and the field makers
the tables share."""

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Integer, Text
from sqlmodel import Field

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def millis(nullable: bool = False, index: bool = False):
    return Field(default=None if nullable else 0, sa_column=Column(BigInteger, nullable=nullable, index=index))


def text_field(nullable: bool = True):
    return Field(default=None if nullable else "", sa_column=Column(Text, nullable=nullable))


def app_ids():
    """The ids of the apps a token or account is limited to, as a JSON list; NULL: every app."""
    return Field(default=None, sa_column=Column(JSON, nullable=True))


def primary_key():
    return Field(default=None, sa_column=Column(BigId, primary_key=True))


def reference(table: str, nullable: bool = True, index: bool = False):
    return Field(
        default=None,
        sa_column=Column(BigId, ForeignKey(f"{table}.id"), nullable=nullable, index=index),
    )
