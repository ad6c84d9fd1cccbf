"""`tally users …`: the dashboard's accounts (not the end users of the apps, which arrive with telemetry)."""

import json
import sys
from dataclasses import asdict
from typing import Annotated

import typer

from tally.server.cli_store import CLI, store
from tally.store import access
from tally.store.accounts import AccountError, hash_password

users_app = typer.Typer(help="Dashboard accounts: who may log in to /dashboard.", no_args_is_help=True)
AppOption = Annotated[list[str] | None, typer.Option(
    "--app", help="An app (name or id) the account is limited to; repeat for more [default: every app]")]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _hashed(password: str) -> str:
    try:
        return hash_password(password)
    except AccountError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


@users_app.command("create")
def users_create(
    email: str,
    role: Annotated[str, typer.Option(help="viewer: pages and figures; analyst: also CSV downloads and export "
                                           "schedules; admin: also accounts")] = "viewer",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    app: AppOption = None,
) -> None:
    """Create a dashboard account; the password is asked for (or read from stdin) and stored as an Argon2id hash."""
    password_hash = _hashed(_password(password_stdin))
    with store() as db:
        account = access.create_account(db, CLI, email=email, password_hash=password_hash, role=role, apps=app or [])
        typer.echo(f"created {account.role} account {account.email}")


@users_app.command("set-password")
def users_set_password(
    email: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
) -> None:
    """Set a new password; browsers logged in to that account are logged out."""
    password_hash = _hashed(_password(password_stdin))
    with store() as db:
        account = access.set_password(db, CLI, email, password_hash=password_hash)
        typer.echo(f"password changed for {account.email}")


@users_app.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON array")] = False) -> None:
    """Every dashboard account: email, role, apps, created, disabled."""
    with store() as db:
        views = access.account_views(db)
    if as_json:
        typer.echo(json.dumps([asdict(view) for view in views]))
        return
    for view in views:
        apps = "every app" if view.apps is None else ", ".join(view.apps)
        typer.echo(f"{view.email:<40} {view.role:<8} {apps}" + ("  disabled" if view.disabled_at else ""))


@users_app.command("set-role")
def users_set_role(
    email: str, role: Annotated[str, typer.Argument(help="viewer, analyst or admin")], app: AppOption = None,
    all_apps: Annotated[bool, typer.Option("--all-apps", help="Lift the account's app limit")] = False,
) -> None:
    """Change an account's role and, with --app or --all-apps, its apps (else they stay); it applies from the
    account's next page."""
    if app and all_apps:
        typer.echo("error: give --app or --all-apps, not both", err=True)
        raise typer.Exit(2)
    with store() as db:
        account = access.change_account(db, CLI, email, role=role, apps=[] if all_apps else (app or None))
        apps = access.view_of(db, account).apps
        done = f"{account.email} is now {account.role} of {'every app' if apps is None else ', '.join(apps)}"
    typer.echo(done)


@users_app.command("disable")
def users_disable(email: str) -> None:
    """Stop an account logging in, and log its browsers out (`enable` undoes it)."""
    _set_disabled(email, True)


@users_app.command("enable")
def users_enable(email: str) -> None:
    """Let a disabled account log in again."""
    _set_disabled(email, False)


@users_app.command("delete")
def users_delete(email: str) -> None:
    """Delete an account and its logins (the audit trail keeps what it did)."""
    with store() as db:
        deleted = access.delete_account(db, CLI, email)
    typer.echo(f"deleted {deleted}")


def _set_disabled(email: str, disabled: bool) -> None:
    with store() as db:
        account = access.change_account(db, CLI, email, disabled=disabled)
        done = f"{account.email} is {'disabled' if disabled else 'enabled'}"
    typer.echo(done)
