"""The relational store: settings, engine, tables and FastAPI dependencies."""
