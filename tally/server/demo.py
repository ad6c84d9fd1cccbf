"""The demo app that `make run` prints, so a newcomer can post a payload at once."""

import json
import os

from sqlalchemy import Engine
from sqlmodel import Session, select

from tally.ingest.keys import add_api_key, create_app
from tally.store.models import App
from tally.store.read_tokens import create_read_token
from tally.store.settings import Settings

DEMO_APP = "demo"


def ensure_demo_app(engine: Engine, settings: Settings) -> dict[str, str]:
    """The demo app's keys; created on first run and kept, readable only by the owner, in the data directory."""
    keys_file = settings.data_dir / "demo-app.json"
    with Session(engine) as db:
        app = db.exec(select(App).where(App.name == DEMO_APP)).first()
        if app is not None and keys_file.exists():
            saved = json.loads(keys_file.read_text())
            if saved.get("app_key") == app.app_key:
                return saved
        if app is None:
            app, api_key = create_app(db, name=DEMO_APP)
        else:
            api_key = add_api_key(db, app=app)
        keys = {"app_key": app.app_key, "api_key": api_key, "read_token": create_read_token(db, name="demo")}
        db.commit()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(keys_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(keys, handle, indent=2)
    return keys
