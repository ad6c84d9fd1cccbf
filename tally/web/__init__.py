"""The HTTP surface: routers, the JSON error envelope, request dependencies and the ingest edge."""
