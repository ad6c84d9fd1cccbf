"""Wiring: the app factory and lifespan, the migration runner, the scheduler and the CLI."""
