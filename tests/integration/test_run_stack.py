"""`make run` stops everything exactly once, whatever signal arrives, and leaves no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand
from setaccounts.settings import Settings
from setaccounts_dev.engines import Engines
from setaccounts_dev.engines.processes import free_port
from tests.helpers.jobs import wait_final
from tests.helpers.processes import stacks_in_this_checkout
from tests.helpers.publishing import send_command
from tests.helpers.resources import patient_with_members, store_resources

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def descendants(root: int) -> set[int]:
    """Every live process below `root` (services and engines run in sessions of their own)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Stack:
    """`make run` (or the script it runs) in its own process group, with its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port, self.log = port, log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.children: set[int] = set()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"make run exited early:\n{self.output()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                    if response.status == 200:
                        self.children = descendants(self.process.pid)
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"not ready within {timeout:.0f}s:\n{self.output()}")

    def assert_all_gone(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = {pid for pid in self.children | {self.process.pid} if alive(pid)}
            if not left and not listening(self.port):
                return
            time.sleep(0.3)
        raise AssertionError(f"still running: {sorted(left)}; log:\n{self.output()}")

    def kill(self) -> None:
        for pid in self.children | {self.process.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], int]]:
    port = free_port()
    env = {**os.environ, "SETACCOUNTS_PORT": str(port), "SETACCOUNTS_ENGINES": "embedded"}
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI"):
        env.pop(name, None)  # embedded engines: the test checks they stop too
    with stacks_in_this_checkout():
        yield env, port


def run_stack(env: dict[str, str], port: int, log: Path, via_make: bool) -> Stack:
    if via_make and shutil.which("make"):
        venv = Path(sys.prefix)
        argv = ["make", "--no-print-directory", "-o", str(venv / ".installed"), "run", f"VENV={venv}"]
    else:
        argv = [sys.executable, "scripts/run_stack.py"]
    return Stack(argv, env, port, log)


def test_sigterm_to_the_whole_group_twice_stops_everything_once(
    stack_env: tuple[dict[str, str], int], tmp_path: Path
) -> None:
    env, port = stack_env
    stack = run_stack(env, port, tmp_path / "run.log", via_make=True)
    try:
        stack.wait_ready()
        assert len(stack.children) >= 4, stack.children  # engines, propagator, api
        os.killpg(stack.process.pid, signal.SIGTERM)  # make forwards it too: the script gets two
        time.sleep(0.2)
        os.killpg(stack.process.pid, signal.SIGTERM)
        stack.process.wait(90)
        stack.assert_all_gone()
        assert stack.output().count("[run] stopping") == 1
        assert "[run] stopped" in stack.output() and "Traceback" not in stack.output()
    finally:
        stack.kill()


@pytest.mark.smoke
def test_one_ctrl_c_stops_everything(stack_env: tuple[dict[str, str], int], tmp_path: Path) -> None:
    env, port = stack_env
    stack = run_stack(env, port, tmp_path / "run.log", via_make=False)
    try:
        stack.wait_ready()
        os.killpg(stack.process.pid, signal.SIGINT)  # what a terminal sends to its foreground group
        assert stack.process.wait(90) == 0
        stack.assert_all_gone()
        assert "[run] stopped" in stack.output() and "Traceback" not in stack.output()
    finally:
        stack.kill()


def test_nothing_outlives_a_killed_runner(
    stack_env: tuple[dict[str, str], int], tmp_path: Path, servers: Engines
) -> None:
    env, port = stack_env
    env.update(servers.as_env())  # only the services matter here: reuse the session's engines
    # servers named by the environment may be a cluster; the session's are one broker
    env.update(SETACCOUNTS_REPLICATION_FACTOR="1", SETACCOUNTS_MIN_INSYNC_REPLICAS="1")
    stack = run_stack(env, port, tmp_path / "run.log", via_make=False)
    try:
        stack.wait_ready()
        assert len(stack.children) >= 2, stack.children  # propagator, api
        stack.process.kill()  # no clean-up at all: the kernel must take the children down
        stack.process.wait(10)
        stack.assert_all_gone(timeout=20)
    finally:
        stack.kill()


def service_pid(stack: Stack, module: str) -> int:
    """The live process under the runner whose command line names `module`."""
    for pid in descendants(stack.process.pid):
        with contextlib.suppress(OSError):
            if module in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return pid
    raise AssertionError(f"no {module} under the runner:\n{stack.output()}")


async def test_a_killed_propagator_is_restarted_and_its_job_completes(
    stack_env: tuple[dict[str, str], int],
    tmp_path: Path,
    settings: Settings,
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    env, port = stack_env
    env.update(settings.to_env())  # the session's engines, and this test's topics, groups and database
    env["SETACCOUNTS_TRUSTED_HOSTS"] = "127.0.0.1"
    members = 3000
    await store_resources(db, *patient_with_members("p1", members))
    stack = run_stack(env, port, tmp_path / "run.log", via_make=False)
    try:
        await asyncio.to_thread(stack.wait_ready)
        first = service_pid(stack, "setaccounts_propagator")
        command = SetAccountsCommand(
            command_id=str(uuid.uuid4()), target="Patient/p1", accounts=["Organization/a"], propagate=True
        )
        await send_command(settings, command)
        deadline = time.monotonic() + 120
        while await db.resources.count_documents({"marks.command_id": command.command_id}) < 200:
            assert time.monotonic() < deadline, f"the job did not start:\n{stack.output()}"
            await asyncio.sleep(0.1)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while "[run] propagator restarted" not in stack.output():
            assert time.monotonic() < deadline, f"the propagator was not restarted:\n{stack.output()}"
            await asyncio.sleep(0.2)
        assert service_pid(stack, "setaccounts_propagator") != first
        assert stack.process.poll() is None, "the runner stopped"
        try:
            job = await wait_final(db, command.command_id, 180)
        except AssertionError as stuck:
            raise AssertionError(f"{stuck}\n{stack.output()}") from None
        assert (job["status"], job["resources_updated"], job["resources_changed"]) == (
            "completed",
            members + 1,
            members + 1,
        )
        stack.children = descendants(stack.process.pid)
        os.killpg(stack.process.pid, signal.SIGTERM)
        assert await asyncio.to_thread(stack.process.wait, 90) == 0
        await asyncio.to_thread(stack.assert_all_gone)
        assert stack.output().count("[run] stopping") == 1
        assert "Traceback" not in stack.output().partition("[run] propagator restarted")[2]
    finally:
        stack.kill()


def test_make_run_prints_the_jobs_console_and_signs_in_with_the_dev_key(
    stack_env: tuple[dict[str, str], int], tmp_path: Path, servers: Engines
) -> None:
    env, port = stack_env
    env.update(servers.as_env())  # the session's engines, under names of this test's own
    run = uuid.uuid4().hex[:10]
    env.update(
        SETACCOUNTS_REPLICATION_FACTOR="1",
        SETACCOUNTS_MIN_INSYNC_REPLICAS="1",
        SETACCOUNTS_MONGODB_DATABASE=f"t_{run}",
        SETACCOUNTS_TOPIC_PREFIX=f"t{run}.",
        SETACCOUNTS_GROUP_PREFIX=f"g{run}",
    )
    for name in [n for n in env if n.startswith("SETACCOUNTS_AUTH_")]:
        del env[name]  # the development key, as `make run` has it by default
    stack = run_stack(env, port, tmp_path / "run.log", via_make=False)
    base = f"http://127.0.0.1:{port}"
    try:
        stack.wait_ready()
        deadline = time.monotonic() + 30
        while "[run] ready in" not in stack.output():
            assert time.monotonic() < deadline, stack.output()
            time.sleep(0.2)
        assert f"jobs console {base}/console/" in stack.output()
        with urllib.request.urlopen(f"{base}/console/", timeout=10) as page:
            assert page.status == 200 and "content-security-policy" in page.headers
        asked = urllib.request.Request(
            f"{base}/console/dev-token",
            data=json.dumps({"subject": "alice", "admin": True}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(asked, timeout=10) as answer:
            token = json.load(answer)["access_token"]
        listing = urllib.request.Request(f"{base}/fhir/R4/job", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(listing, timeout=10) as answer:
            assert json.load(answer) == {"jobs": [], "next_cursor": None, "next": None}
        os.killpg(stack.process.pid, signal.SIGINT)
        assert stack.process.wait(90) == 0
    finally:
        stack.kill()
