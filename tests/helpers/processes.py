"""The services as real processes, for tests that kill them."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from setaccounts.settings import Settings
from setaccounts_dev.commands import api_command, propagator_command
from setaccounts_dev.engines.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.to_env(), "SETACCOUNTS_LOG_LEVEL": "WARNING"}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@contextmanager
def propagator_process(settings: Settings, *role: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(propagator_command(*role), env=_env(settings), start_new_session=True)
    try:
        yield proc
    finally:
        _stop(proc)


@contextmanager
def api_process(settings: Settings, timeout: float = 60) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The API under uvicorn on a free loopback port; yields the process and its FHIR base URL."""
    port = free_port()
    argv = api_command("127.0.0.1", port)
    env = {**_env(settings), "SETACCOUNTS_TRUSTED_HOSTS": "127.0.0.1"}  # the Host it is called by
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "the API exited during start-up"
            assert time.monotonic() < deadline, f"the API was not ready within {timeout}s"
            time.sleep(0.2)
        yield proc, f"http://127.0.0.1:{port}/fhir/R4"
    finally:
        _stop(proc)


@contextmanager
def stacks_in_this_checkout(exclusive: bool = False) -> Iterator[None]:
    """Hold while a test runs `make run` in this checkout: every such stack records itself in the checkout's
    one `.run/stack.json` and removes the record when it stops, so a test that reads the record holds it
    alone (`exclusive`) while the others share it (test workers are processes: a file lock)."""
    lock = ROOT / ".run" / "stacks.lock"
    lock.parent.mkdir(exist_ok=True)
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
