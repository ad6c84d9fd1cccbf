"""Portable column types: the only place where the table definitions differ by dialect."""

from sqlalchemy import BigInteger, Integer

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")
