"""Ingest: the Reconify wire schema, provider adapters, keys, users, sessions, the writer and the routes."""
