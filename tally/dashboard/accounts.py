"""Dashboard accounts: creating them, checking passwords with Argon2id, and the logins that cookies carry."""

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, delete, select

from tally.store.models import DashboardAccount, DashboardLogin
from tally.store.secrets import hash_secret, now_ms

MIN_PASSWORD_LENGTH = 8
# argon2-cffi's defaults (RFC 9106's second recommended profile: 64 MiB, 3 passes, 4 lanes).
_hasher = PasswordHasher()
# Verified when the email is unknown, so that a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """An account request that cannot be carried out (duplicate email, short password…)."""


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if "@" not in email or email.startswith("@") or email.endswith("@") or len(email) > 320:
        raise AccountError(f"{email!r} is not an email address")
    return email


def _checked_hash(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def create_account(db: Session, *, email: str, password: str, is_admin: bool = False) -> DashboardAccount:
    email = normalise_email(email)
    if find_account(db, email=email) is not None:
        raise AccountError(f"an account for {email} already exists")
    now = now_ms()
    account = DashboardAccount(email=email, password_hash=_checked_hash(password), is_admin=is_admin,
                               created_at=now, password_changed_at=now)
    db.add(account)
    db.flush()
    return account


def set_password(db: Session, *, email: str, password: str) -> DashboardAccount:
    """A new password; every browser logged in with the old one is logged out."""
    account = find_account(db, email=normalise_email(email))
    if account is None:
        raise AccountError(f"no account for {email}")
    account.password_hash = _checked_hash(password)
    account.password_changed_at = now_ms()
    db.add(account)
    for login in db.exec(select(DashboardLogin).where(DashboardLogin.account_id == account.id)):
        db.delete(login)
    db.flush()
    return account


def find_account(db: Session, *, email: str) -> DashboardAccount | None:
    return db.exec(select(DashboardAccount).where(DashboardAccount.email == email.strip().lower())).first()


def authenticate(db: Session, *, email: str, password: str) -> DashboardAccount | None:
    account = find_account(db, email=email)
    try:
        _hasher.verify(account.password_hash if account else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if account is None:
        return None
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = _hasher.hash(password)
        db.add(account)
    return account


def start_login(db: Session, *, account: DashboardAccount, hours: float) -> str:
    """A new login for `account`; returns the token the cookie will carry (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = now_ms()
    db.exec(delete(DashboardLogin).where(DashboardLogin.expires_at <= now))
    db.add(DashboardLogin(account_id=account.id, token_hash=hash_secret(token), created_at=now,
                          expires_at=now + int(hours * 3_600_000)))
    db.flush()
    return token


def find_login(db: Session, *, token: str) -> DashboardAccount | None:
    login = db.exec(select(DashboardLogin).where(DashboardLogin.token_hash == hash_secret(token))).first()
    if login is None or login.expires_at <= now_ms():
        return None
    return db.get(DashboardAccount, login.account_id)


def end_login(db: Session, *, token: str) -> None:
    for login in db.exec(select(DashboardLogin).where(DashboardLogin.token_hash == hash_secret(token))):
        db.delete(login)
    db.flush()
