"""Managing who may do what: API tokens and dashboard accounts, each change recorded in the audit trail with who
made it and from where, in the same transaction. The command line, the admin API and the dashboard's Access page
all go through here, so they change the same things the same way.

Apps are named as people name them (an app's name, or its id); errors are `UnknownApp`, `TokenError` or
`AccountError`, each naming the field at fault.
"""

from dataclasses import dataclass

from sqlmodel import Session

from tally.store import accounts, audit, read_tokens
from tally.store.accounts import EVERY_APP
from tally.store.app_access import app_names, resolve_apps
from tally.store.models import DashboardAccount
from tally.store.secrets import display_prefix


@dataclass(frozen=True)
class Actor:
    """Who makes a change (as the audit trail names them) and from which address (None: the command line)."""

    name: str
    address: str | None = None


@dataclass(frozen=True)
class AccountView:
    email: str
    role: str
    apps: list[str] | None  # names; None: every app
    created_at: int
    disabled_at: int | None


def create_token(db: Session, actor: Actor, *, name: str, scope: str, apps: list[str],
                 expires_in_days: float | None) -> str:
    """A new token (returned in clear, this once), limited to `apps` when any are named."""
    app_ids = resolve_apps(db, apps)
    token = read_tokens.create_read_token(db, name=name, scope=scope, expires_in_days=expires_in_days, apps=app_ids)
    audit.record(db, actor=actor.name, action="token.create", target=f"{name} ({display_prefix(token)}…)",
                 address=actor.address, detail={"scope": scope, "expires_in_days": expires_in_days, "apps": app_ids})
    return token


def revoke_token(db: Session, actor: Actor, name_or_prefix: str) -> int:
    count = read_tokens.revoke_tokens(db, name_or_prefix)
    audit.record(db, actor=actor.name, action="token.revoke", target=name_or_prefix, address=actor.address,
                 detail={"tokens": count})
    return count


def create_account(db: Session, actor: Actor, *, email: str, password_hash: str, role: str,
                   apps: list[str]) -> DashboardAccount:
    app_ids = resolve_apps(db, apps)
    account = accounts.create_account(db, email=email, password_hash=password_hash, role=role, apps=app_ids)
    audit.record(db, actor=actor.name, action="account.create", target=account.email, address=actor.address,
                 detail={"role": account.role, "apps": app_ids})
    return account


def change_account(db: Session, actor: Actor, email: str, *, role: str | None = None,
                   apps: list[str] | None = None, disabled: bool | None = None) -> DashboardAccount:
    """A new role and/or apps (`[]`: every app; None: unchanged), and/or disabled or enabled again."""
    account = accounts.find_existing(db, email)
    if role is not None or apps is not None:
        app_ids = None if apps is None else (resolve_apps(db, apps) or EVERY_APP)
        account = accounts.set_role(db, email=account.email, role=role or account.role, apps=app_ids)
        audit.record(db, actor=actor.name, action="account.role", target=account.email, address=actor.address,
                     detail={"role": account.role, "apps": account.apps})
    if disabled is not None and (account.disabled_at is not None) != disabled:
        account = accounts.set_disabled(db, email=account.email, disabled=disabled)
        audit.record(db, actor=actor.name, action="account.disable" if disabled else "account.enable",
                     target=account.email, address=actor.address)
    return account


def set_password(db: Session, actor: Actor, email: str, *, password_hash: str) -> DashboardAccount:
    account = accounts.set_password(db, email=email, password_hash=password_hash)
    audit.record(db, actor=actor.name, action="account.password", target=account.email, address=actor.address)
    return account


def delete_account(db: Session, actor: Actor, email: str) -> str:
    """Deletes the account and its logins; returns its email."""
    account = accounts.find_existing(db, email)
    accounts.delete_account(db, email=account.email)
    audit.record(db, actor=actor.name, action="account.delete", target=account.email, address=actor.address)
    return account.email


def account_views(db: Session) -> list[AccountView]:
    return [view_of(db, account) for account in accounts.list_accounts(db)]


def view_of(db: Session, account: DashboardAccount) -> AccountView:
    return AccountView(account.email, account.role, app_names(db, account.apps), account.created_at,
                       account.disabled_at)
