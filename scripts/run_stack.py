"""`make run`: engines (from the environment, Docker, or embedded), topics, the propagator and the API on
http://127.0.0.1:8000, all stopped cleanly on Ctrl-C.

A service (the propagator or the API) that exits on its own is started again after a back-off (1 s, doubling
up to 30 s; back to 1 s once it has run a minute), while the engines and their data stay as they are.
Stops exactly once whatever arrives: the first SIGINT, SIGTERM or SIGHUP starts the clean-up and any
further one is ignored (`kill -TERM -- -<pgid>` on `make run` delivers SIGTERM twice: from the group and
from make). Every child dies with this script even if it is killed with SIGKILL (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from setaccounts import stack_file
from setaccounts.settings import Settings
from setaccounts.topics import create_topics
from setaccounts_dev.commands import api_command, propagator_command
from setaccounts_dev.devkeys import KEY_FILE, dev_auth_env
from setaccounts_dev.engines import EngineError, Engines, engines
from setaccounts_dev.engines.processes import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
HOST, PORT = os.environ.get("SETACCOUNTS_HOST", "127.0.0.1"), int(os.environ.get("SETACCOUNTS_PORT", "8000"))
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_stopping = False


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def start(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    say(f"starting {name}: {' '.join(argv[1:])}")
    # Own session: a terminal's Ctrl-C reaches only this script, which then stops the services in order.
    # Killed by the kernel if this script dies first, however it dies.
    return subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True, preexec_fn=die_with_parent)


def wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit("[run] a service exited during start-up; see its log above")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"[run] {url} did not become ready within {timeout:.0f}s")


class Supervised:
    """A service under the runner: started again, after a growing back-off, whenever it exits by itself."""

    FIRST_BACKOFF, MAX_BACKOFF, STABLE_SECONDS = 1.0, 30.0, 60.0

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc = start(name, argv, env)
        self.started = time.monotonic()
        self.backoff = self.FIRST_BACKOFF
        self.restart_at: float | None = None
        self.restarts = 0

    def check(self) -> None:
        """Notice an exit and schedule a restart; restart once the back-off has passed."""
        now = time.monotonic()
        if self.restart_at is None:
            code = self.proc.poll()
            if code is None:
                return
            if now - self.started >= self.STABLE_SECONDS:
                self.backoff = self.FIRST_BACKOFF
            say(f"{self.name} exited with code {code}; restarting it in {self.backoff:.0f}s")
            self.restart_at = now + self.backoff
            self.backoff = min(self.backoff * 2, self.MAX_BACKOFF)
        elif now >= self.restart_at:
            self.restart_at = None
            self.restarts += 1
            self.proc = start(self.name, self.argv, self.env)
            self.started = now
            say(f"{self.name} restarted (pid {self.proc.pid}, restart {self.restarts})")


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _stop_once(signum: int, _frame: object) -> None:
    """The first stop signal interrupts whatever runs; the clean-up then ignores every further one."""
    global _stopping
    if _stopping:
        return
    _ignore_stop_signals()
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _ignore_stop_signals() -> None:
    global _stopping
    _stopping = True
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def main() -> None:
    # Explicit handlers: a stack started in the background inherits SIGINT as ignored, and
    # service managers stop it with SIGTERM; both must stop everything cleanly.
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop_once)
    if not port_free(HOST, PORT):
        raise SystemExit(f"[run] port {PORT} on {HOST} is in use; stop what uses it or set SETACCOUNTS_PORT")
    started = time.monotonic()
    workdir = ROOT / ".run"
    workdir.mkdir(exist_ok=True)
    stack: contextlib.AbstractContextManager[Engines] | None = None
    services: list[Supervised] = []
    try:
        say("starting the engines")
        starting = engines(workdir)
        try:
            found = starting.__enter__()
        except EngineError as exc:
            raise SystemExit(f"[run] {exc}") from exc
        stack = starting
        say(f"engines ({found.kind}): {found.description}")
        say(f"kafka {found.kafka_bootstrap_servers}, mongodb {found.mongodb_uri}")
        os.environ.update(found.as_env())
        for name, value in found.topic_env().items():
            os.environ.setdefault(name, value)
        env = dict(os.environ)
        if not any(name.startswith("SETACCOUNTS_AUTH_") for name in os.environ):
            env.update(dev_auth_env(workdir))  # trust this checkout's key: `setaccounts token` signs with it
            env["SETACCOUNTS_CONSOLE_DEV_KEY_FILE"] = str(workdir / KEY_FILE)  # the console's dev sign-in
            say("API trusts the development key in .run/: get a token with `.venv/bin/setaccounts token`")
        settings = Settings()
        created = asyncio.run(create_topics(settings))
        say(f"topics ready ({', '.join(created) or 'already there'})")
        services.append(Supervised("propagator", propagator_command(), env))
        services.append(
            Supervised(
                "api",
                api_command(HOST, PORT, "--log-level", "warning", "--no-server-header"),
                env,
            )
        )
        wait_ready(f"http://{HOST}:{PORT}/readyz", [service.proc for service in services])
        stack_file.write(workdir, env, f"http://{HOST}:{PORT}/fhir/R4")  # the tools find the stack here
        say(
            f"ready in {time.monotonic() - started:.1f}s: API on http://{HOST}:{PORT}/fhir/R4 "
            f"(docs http://{HOST}:{PORT}/docs, jobs console http://{HOST}:{PORT}/console/). "
            "Ctrl-C stops everything."
        )
        while True:  # until a stop signal
            for service in services:
                service.check()
            time.sleep(0.5)
    except KeyboardInterrupt as signalled:
        say(f"{signalled.args[0] if signalled.args else 'interrupted'} received")
    finally:
        _ignore_stop_signals()
        stack_file.remove(workdir)
        say("stopping")
        stop_all([service.proc for service in services])
        if stack is not None:
            stack.__exit__(None, None, None)
        say("stopped")


if __name__ == "__main__":
    main()
