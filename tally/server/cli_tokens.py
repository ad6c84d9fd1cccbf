"""`tally tokens …`: the bearer tokens of the read, analytics and exports APIs, each with a scope."""

import json
from dataclasses import asdict
from typing import Annotated

import typer

from tally.server.cli_store import CLI, store, utc_minute
from tally.store import access
from tally.store.read_tokens import SCOPES, list_tokens

tokens_app = typer.Typer(help="API tokens: read (the read API, CSV downloads), export (also export schedules), "
                              "admin (everything).", no_args_is_help=True)


@tokens_app.command("create")
def tokens_create(
    name: str,
    scope: Annotated[list[str] | None, typer.Option(
        help=f"What it may do: {', '.join(SCOPES)}, each allowing what the ones before it allow; given more than "
             "once, the widest counts [default: read]")] = None,
    expires_in: Annotated[float | None, typer.Option(help="Days until it stops working [default: never]")] = None,
    app: Annotated[list[str] | None, typer.Option(
        help="An app (name or id) it is limited to; repeat for more [default: every app]")] = None,
) -> None:
    """Create a token; prints it alone on stdout (only its hash is kept: it cannot be shown again)."""
    unknown = [given for given in scope or [] if given not in SCOPES]
    if unknown:
        typer.echo(f"error: unknown scope {unknown[0]!r}; use one of {', '.join(SCOPES)}", err=True)
        raise typer.Exit(2)
    widest = max(scope or ["read"], key=SCOPES.index)
    with store() as db:
        token = access.create_token(db, CLI, name=name, scope=widest, apps=app or [], expires_in_days=expires_in)
    typer.echo(token)


@tokens_app.command("list")
def tokens_list(as_json: Annotated[bool, typer.Option("--json", help="One JSON array")] = False) -> None:
    """Every token: name, shown prefix, scope, apps, created, last used, expires, revoked (never the secret)."""
    with store() as db:
        tokens = list_tokens(db)
    if as_json:
        typer.echo(json.dumps([asdict(token) for token in tokens]))
        return
    typer.echo(f"{'name':<24} {'prefix':<14} {'scope':<7} {'apps':<20} {'created':<20} {'last used':<20} "
               f"{'expires':<20} revoked")
    for token in tokens:
        times = (token.created_at, token.last_used_at, token.expires_at)
        apps = "all" if token.apps is None else ",".join(token.apps)
        typer.echo(f"{token.name[:24]:<24} {token.prefix:<14} {token.scope:<7} {apps[:20]:<20} "
                   + " ".join(f"{utc_minute(ms):<20}" for ms in times) + f" {utc_minute(token.revoked_at)}")


@tokens_app.command("revoke")
def tokens_revoke(name_or_prefix: str) -> None:
    """Revoke the live tokens with this name, or the one with this prefix (as `tokens list` shows it)."""
    with store() as db:
        count = access.revoke_token(db, CLI, name_or_prefix)
    typer.echo(f"revoked {count} token{'s' if count != 1 else ''}")
