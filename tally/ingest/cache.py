"""What the storage process remembers of users and session tails between transactions, and when it may.

On SQLite the storage process is the store's only writer (one server per store, see `server.instance`), so what
its own transactions wrote stays true until another connection commits (a CLI command, a dashboard login): the
store's `data_version` tells, at the start of each transaction, and then everything is forgotten. On PostgreSQL
other replicas write at any time, so nothing is remembered and every transaction reads what it needs.
"""

from cachetools import LRUCache

from tally.store.engine import others_wrote_since

MAX_ENTRIES = 200_000  # each of users and tails; the least recently used go first


class StoreCache:
    def __init__(self, size: int = MAX_ENTRIES) -> None:
        self.users: LRUCache = LRUCache(size)  # (app_id, "id:…"/"email:…") → users.KnownUser
        self.tails: LRUCache = LRUCache(size)  # (app_id, session key) → sessions.Tail or None (no interactions)
        self._version: int | None = None

    def begin(self, connection) -> bool:
        """Call first in each storing transaction: whether the cache may be used in it."""
        version = others_wrote_since(connection)
        if version is None or version != self._version:
            self.forget()
        self._version = version
        return version is not None

    def forget(self) -> None:
        """After a failed transaction (its changes to cached objects never happened) or another writer's commit."""
        self.users.clear()
        self.tails.clear()
        self._version = None
