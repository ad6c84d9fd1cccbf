"""`tally users …`: the dashboard's accounts (not the end users of the apps, which arrive with telemetry)."""

import sys
from typing import Annotated

import typer

from tally.dashboard.accounts import create_account, set_password
from tally.server.cli_store import store

users_app = typer.Typer(help="Dashboard accounts: who may log in to /dashboard.", no_args_is_help=True)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_app.command("create")
def users_create(
    email: str,
    admin: Annotated[bool, typer.Option("--admin", help="May also manage export schedules on the dashboard")] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
) -> None:
    """Create a dashboard account; the password is asked for (or read from stdin) and stored as an Argon2id hash."""
    password = _password(password_stdin)
    with store() as db:
        account = create_account(db, email=email, password=password, is_admin=admin)
        typer.echo(f"created {'admin ' if account.is_admin else ''}account {account.email}")


@users_app.command("set-password")
def users_set_password(
    email: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
) -> None:
    """Set a new password; browsers logged in to that account are logged out."""
    password = _password(password_stdin)
    with store() as db:
        account = set_password(db, email=email, password=password)
        typer.echo(f"password changed for {account.email}")
