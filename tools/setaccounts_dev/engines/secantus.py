"""SecantusDB: a MongoDB-wire-protocol server on WiredTiger (PyPI `SecantusDB`). It is GPL, so it only
ever runs as its own process: never import it."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from setaccounts_dev.engines.processes import EmbeddedProcess, free_port, wait_mongo_ping
from setaccounts_dev.engines.servers import EngineError

# The chunk sizes SecantusDB works best with (`setaccounts.profile`): it answers an `$in` on `_id` in
# time that grows faster than the hits (client / server CPU µs per document at 25 ids 60 / 150, 50 ids
# 44 / 190, 100 ids 30 / 240), and spends half the server CPU per resource on `update_many`s of 25 ids
# that it spends on one statement per resource, more again on larger ones (`benchmarks/store_costs.py`).
TUNING = {"store_read_chunk": 50, "store_write_chunk": 25}


@dataclass(frozen=True)
class MongoUser:
    """A SecantusDB user (SCRAM-SHA-256), defined in `admin`."""

    username: str
    password: str = field(repr=False)


def create_mongo_user(uri: str, user: MongoUser, database: str) -> None:
    """`createUser` in `admin` with read and write on `database`, over the wire. SecantusDB takes it from
    a client of a server started without `--auth`; restart it with `user=` to require the login."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        roles = [{"role": "readWrite", "db": database}, {"role": "dbAdmin", "db": database}]
        client.admin.command("createUser", user.username, pwd=user.password, roles=roles)
    finally:
        client.close()


def start_secantus(
    workdir: Path, port: int | None = None, durable: bool = False, user: MongoUser | None = None
) -> tuple[EmbeddedProcess, str]:
    """Start SecantusDB as its own Python process (never imported: it is GPL) and wait for a ping.

    `durable` syncs every commit to disk, so an acknowledged write survives a kill -9 of the server.
    `user`: run with `--auth` (every command but the handshake and ping needs a login; create the user
    first with `create_mongo_user`); the URI returned then carries the user's credentials.
    """
    if importlib.util.find_spec("secantus") is None:
        raise EngineError(
            "The embedded MongoDB server needs the `SecantusDB` package: pip install '.[embedded]'"
        )
    for _attempt in range(3):
        chosen = port or free_port()
        data = workdir / "secantus-data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "secantus",
            "--host",
            "127.0.0.1",
            "--port",
            str(chosen),
            "--storage-path",
            str(data),
            "--log-level",
            "WARNING",
            *(["--sync-on-commit"] if durable else []),
            *(["--auth"] if user else []),
        ]
        proc = EmbeddedProcess("secantus", argv, dict(os.environ), workdir / "secantus.log")
        try:
            proc.wait_port(chosen, timeout=60)
        except EngineError:
            proc.stop()
            if port is not None:
                raise
            continue
        uri = f"mongodb://127.0.0.1:{chosen}/?directConnection=true"
        if user is not None:
            login = f"{quote_plus(user.username)}:{quote_plus(user.password)}"
            uri = f"mongodb://{login}@127.0.0.1:{chosen}/?directConnection=true&authSource=admin"
        wait_mongo_ping(uri, proc)
        return proc, uri
    raise EngineError("SecantusDB could not start on a free port after 3 attempts; see secantus.log")
