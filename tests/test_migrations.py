"""Migrations build the whole schema from empty on each database, matching the models exactly."""

import ast
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from tally.server import migrations
from tally.store.models import SQLModel

VERSIONS = Path(migrations.__file__).parents[1] / "migrations" / "versions"


def test_upgrade_head_from_empty_leaves_no_autogenerate_diff(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []
    assert set(inspect(engine).get_table_names()) >= set(SQLModel.metadata.tables)


def test_upgrade_is_idempotent(engine, settings):
    migrations.upgrade(settings)


def test_migrations_import_no_project_code_and_are_named_by_date():
    for path in VERSIONS.glob("*.py"):
        assert path.name[:11].replace("_", "").isdigit(), f"{path.name} is not named YYYY_MM_DD_slug"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(name.startswith("tally") for name in names), f"{path.name} imports {names}"


def test_failed_migration_leaves_the_store_as_it_was(settings, monkeypatch):
    """DDL runs in the migration's transaction on both databases, so a failure leaves no half-altered table."""
    from alembic.operations import Operations

    migrations.upgrade(settings, "2026_11_22_initial")
    monkeypatch.setattr(Operations, "execute", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        migrations.upgrade(settings)
    monkeypatch.undo()
    migrations.upgrade(settings)


def test_upgrade_keeps_existing_rows(settings):
    from sqlalchemy import text

    from tally.store.engine import build_engine

    migrations.upgrade(settings, "2026_11_22_initial")
    engine = build_engine(settings)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO app (id, name, app_key, created_at) VALUES (1, 'a', 'app_1', 5)"))
        conn.execute(text("INSERT INTO end_user (id, app_id, external_id, profile_at, created_at) "
                          "VALUES (1, 1, 'u', 5, 7)"))
        conn.execute(text("INSERT INTO interaction_session (id, app_id, created_at) VALUES (1, 1, 5)"))
    migrations.upgrade(settings)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT external_id, updated_at FROM end_user")).one() == ("u", 7)
    engine.dispose()
