"""A store outage done to a MongoDB the test does not own (`MONGODB_URI` given): a TCP relay between the
services and that server, which the test cuts (every connection reset, new ones refused: the server is
gone) and restores, or freezes (connections stay open and nothing flows: the server hangs) and thaws.
The relay runs on its own thread and event loop, so it keeps relaying while the test's loop waits."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Coroutine
from typing import Any

from pymongo.uri_parser import parse_uri

from setaccounts_dev.engines.processes import free_port

CHUNK = 64 * 1024


def relayed_uri(uri: str, port: int) -> str:
    """`uri` with its hosts replaced by the relay, connected directly (no replica-set discovery, which would
    find the server's own address and go around the relay)."""
    head, rest = uri.split("://", 1)
    credentials, _, hosts_and_more = rest.rpartition("@")
    _hosts, slash, tail = hosts_and_more.partition("/")
    path, _, query = tail.partition("?")
    options = [o for o in query.split("&") if o and not re.match(r"(?i)(replicaSet|directConnection)=", o)]
    options.append("directConnection=true")
    auth = f"{credentials}@" if credentials else ""
    return f"{head}://{auth}127.0.0.1:{port}/{path if slash else ''}?{'&'.join(options)}"


class StoreLink:
    """The relay: `uri` reaches the configured server through it; `kill`/`restart` and `pause`/`resume`
    are the outages (the names of the test's own store's, so a test runs either)."""

    def __init__(self, uri: str) -> None:
        if uri.startswith("mongodb+srv://"):
            raise ValueError("a mongodb+srv:// URI names no host to relay to")
        self._upstream = parse_uri(uri)["nodelist"][0]
        self.port = free_port()
        self.uri = relayed_uri(uri, self.port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="store-link", daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._call(self._start())

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._open |= {client_writer, server_writer}
        await asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                await self._flowing.wait()  # frozen: nothing reaches the other side
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._open.discard(writer)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def kill(self) -> None:
        """The server is gone: every connection reset, none accepted."""
        self._call(self._cut())

    def restart(self) -> None:
        """The server is back on the same address."""
        self._call(self._start())

    def pause(self) -> None:
        """The server hangs: connections stay open, nothing is answered."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def stop(self) -> None:
        self.resume()
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
