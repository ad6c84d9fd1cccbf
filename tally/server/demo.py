"""The demo app and dashboard account that `make run` prints, so a newcomer can post a payload and log in at once."""

import json
import os
import secrets

from sqlalchemy import Engine
from sqlmodel import Session, select

from tally.ingest.keys import add_api_key, create_app
from tally.store.accounts import authenticate, create_account, find_account, hash_password, set_password
from tally.store.models import App
from tally.store.read_tokens import create_read_token
from tally.store.settings import Settings

DEMO_APP = "demo"
DEMO_EMAIL = "demo@tally.local"


def ensure_demo_app(engine: Engine, settings: Settings) -> dict[str, str]:
    """The demo keys and login; created on first run and kept, readable only by the owner, in the data directory."""
    keys_file = settings.data_dir / "demo-app.json"
    saved = json.loads(keys_file.read_text()) if keys_file.exists() else {}
    with Session(engine) as db:
        app = db.exec(select(App).where(App.name == DEMO_APP)).first()
        same_store = app is not None and saved.get("app_key") == app.app_key
        if same_store and authenticate(db, email=DEMO_EMAIL, password=saved.get("dashboard_password", ""))[0]:
            return saved
        if app is None:
            app, api_key = create_app(db, name=DEMO_APP)
        elif same_store and saved.get("api_key"):
            api_key = saved["api_key"]
        else:
            api_key = add_api_key(db, app=app)
        read_token = saved["read_token"] if same_store and saved.get("read_token") else create_read_token(
            db, name="demo")
        password = secrets.token_urlsafe(12)
        if find_account(db, email=DEMO_EMAIL) is None:
            create_account(db, email=DEMO_EMAIL, password_hash=hash_password(password), role="admin")
        else:
            set_password(db, email=DEMO_EMAIL, password_hash=hash_password(password))
        keys = {"app_key": app.app_key, "api_key": api_key,
                "read_token": read_token,
                "dashboard_email": DEMO_EMAIL, "dashboard_password": password}
        db.commit()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(keys, handle, indent=2)
    return keys
