"""Dashboard accounts: creating them, checking passwords with Argon2id, and the logins that cookies carry."""

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, col, delete, select

from tally.store.models import DashboardAccount, DashboardLogin
from tally.store.secrets import hash_secret, now_ms

MIN_PASSWORD_LENGTH = 8
ROLES = ("viewer", "analyst", "admin")  # each may do what the ones before it may
# argon2-cffi's defaults (RFC 9106's second recommended profile: 64 MiB, 3 passes, 4 lanes).
_hasher = PasswordHasher()
# Verified when the email is unknown, so that a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """An account request that cannot be carried out (duplicate email, short password…); `field` names what."""

    def __init__(self, message: str, field: str = "email") -> None:
        super().__init__(message)
        self.field = field


class NoAccount(AccountError):
    """There is no account with that email."""


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@") or len(email) > 320:
        raise AccountError(f"{email!r} is not an email address")
    return email


def hash_password(password: str) -> str:
    """The Argon2id hash of a new password (about half a second: compute it before opening a transaction)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters", "password")
    return _hasher.hash(password)


def may(account: DashboardAccount, role: str) -> bool:
    """Whether `account` may do what `role` may."""
    return ROLES.index(account.role) >= ROLES.index(role)


def _known_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; use one of {', '.join(ROLES)}", "role")
    return role


def create_account(db: Session, *, email: str, password_hash: str, role: str = "viewer",
                   apps: list[int] | None = None) -> DashboardAccount:
    """A new account; `apps` None: it sees every app."""
    email = normalise_email(email)
    if find_account(db, email=email) is not None:
        raise AccountError(f"an account for {email} already exists")
    now = now_ms()
    account = DashboardAccount(email=email, password_hash=password_hash, role=_known_role(role),
                               created_at=now, password_changed_at=now, apps=apps)
    _admin_sees_all(account)
    db.add(account)
    db.flush()
    return account


def set_password(db: Session, *, email: str, password_hash: str) -> DashboardAccount:
    """A new password; every browser logged in with the old one is logged out."""
    account = find_existing(db, email)
    account.password_hash = password_hash
    account.password_changed_at = now_ms()
    db.add(account)
    _end_logins(db, account)
    return account


EVERY_APP: list[int] = []  # `set_role(apps=EVERY_APP)`: lift the account's app restriction


def set_role(db: Session, *, email: str, role: str, apps: list[int] | None = None) -> DashboardAccount:
    """A new role and, when `apps` is given, the apps it is limited to (`EVERY_APP` lifts the limit; None keeps
    it), in force from the account's next request (its logins stay)."""
    account = find_existing(db, email)
    account.role = _known_role(role)
    if apps is not None:
        account.apps = apps or None
    _admin_sees_all(account)
    db.add(account)
    db.flush()
    return account


def _admin_sees_all(account: DashboardAccount) -> None:
    if account.role == "admin" and account.apps is not None:
        raise AccountError("an admin manages every app's accounts and tokens: it cannot be limited to some apps "
                           "(give it every app, or another role)", "apps")


def set_disabled(db: Session, *, email: str, disabled: bool) -> DashboardAccount:
    """Disables the account (it cannot log in, and its browsers are logged out) or enables it again."""
    account = find_existing(db, email)
    account.disabled_at = now_ms() if disabled else None
    db.add(account)
    if disabled:
        _end_logins(db, account)
    db.flush()
    return account


def delete_account(db: Session, *, email: str) -> None:
    account = find_existing(db, email)
    _end_logins(db, account)
    db.delete(account)
    db.flush()


def list_accounts(db: Session) -> list[DashboardAccount]:
    return list(db.exec(select(DashboardAccount).order_by(col(DashboardAccount.email))).all())


def find_existing(db: Session, email: str) -> DashboardAccount:
    """The account with this email; NoAccount if there is none (or `email` is not an address at all)."""
    try:
        account = find_account(db, email=normalise_email(email))
    except AccountError:
        account = None
    if account is None:
        raise NoAccount(f"no account for {email[:320]}")
    return account


def _end_logins(db: Session, account: DashboardAccount) -> None:
    db.exec(delete(DashboardLogin).where(col(DashboardLogin.account_id) == account.id))
    db.flush()


def find_account(db: Session, *, email: str) -> DashboardAccount | None:
    return db.exec(select(DashboardAccount).where(DashboardAccount.email == email.strip().lower())).first()


def authenticate(db: Session, *, email: str, password: str) -> tuple[DashboardAccount | None, str | None]:
    """The account whose password this is, or None; with a new hash when argon2's parameters have changed since
    the stored one was made. It only reads: the slow hash check must not run inside a write transaction, where
    it would hold SQLite's write lock (and stall ingest) for half a second."""
    account = find_account(db, email=email)
    try:
        _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None, None
    if account is None or account.disabled_at is not None:
        return None, None
    return account, _hasher.hash(password) if _hasher.check_needs_rehash(account.password_hash) else None


def start_login(db: Session, *, account_id: int, hours: float, new_hash: str | None = None) -> str:
    """A new login for the account; returns the token the cookie will carry (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = now_ms()
    if new_hash is not None:
        account = db.get(DashboardAccount, account_id)
        if account is not None:
            account.password_hash = new_hash
            db.add(account)
    db.exec(delete(DashboardLogin).where(col(DashboardLogin.expires_at) <= now))
    db.add(DashboardLogin(account_id=account_id, token_hash=hash_secret(token), created_at=now,
                          expires_at=now + int(hours * 3_600_000)))
    db.flush()
    return token


def find_login(db: Session, *, token: str) -> DashboardAccount | None:
    login = db.exec(select(DashboardLogin).where(DashboardLogin.token_hash == hash_secret(token))).first()
    if login is None or login.expires_at <= now_ms():
        return None
    account = db.get(DashboardAccount, login.account_id)
    return account if account is not None and account.disabled_at is None else None


def end_login(db: Session, *, token: str) -> None:
    for login in db.exec(select(DashboardLogin).where(DashboardLogin.token_hash == hash_secret(token))):
        db.delete(login)
    db.flush()
