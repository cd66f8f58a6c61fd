"""Engines as child processes: started with their own log, waited for, stopped, and killed with the
process that started them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from setaccounts_dev.engines.servers import EngineError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def die_with_parent() -> None:
    """Linux: the engine is killed if the process that started it dies, even by SIGKILL (no orphans)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class EmbeddedProcess:
    """One engine subprocess with its log file; `stop()` terminates it and waits, killing if it must."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_port(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise EngineError(
                    f"{self.name} exited with code {self.process.returncode} before listening on "
                    f"127.0.0.1:{port} (port busy?). Log {self.log_path}:\n{self.log_tail()}"
                )
            if port_open(port):
                time.sleep(0.2)  # Tansu binds, then may still exit 0 when the port was taken.
                if self.alive():
                    return
                continue
            time.sleep(0.05)
        raise EngineError(f"{self.name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        self._log.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean shutdown, the data directory stays as it was."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()


def wait_mongo_ping(uri: str, proc: EmbeddedProcess | None = None, timeout: float = 30) -> None:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    deadline = time.monotonic() + timeout
    while True:
        client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=1000)
        try:
            client.admin.command("ping")
            return
        except PyMongoError as exc:
            if proc is not None and not proc.alive():
                raise EngineError(f"SecantusDB exited: {proc.log_tail()}") from exc
            if time.monotonic() > deadline:
                where = uri.rpartition("@")[2] if "@" in uri else uri  # never the credentials
                raise EngineError(f"MongoDB at {where} did not answer a ping within {timeout:.0f}s") from exc
            time.sleep(0.2)
        finally:
            client.close()


def write_private(path: Path, text: str) -> None:
    """A file only its owner may read (it holds a password), created so from the start."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(text)


def in_own_loop(coroutine_function: Any, *args: Any) -> Any:
    """Run an async function to completion on a private event loop (callers may be inside one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine_function(*args)).result()
