"""A newcomer's second terminal: with `make run` going in the checkout, the audit CLI finds the stack
through `.run/stack.json` without any variable; the file goes when the stack stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from setaccounts_dev.engines.processes import free_port
from tests.helpers.processes import stacks_in_this_checkout

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
STACK_FILE = ROOT / ".run" / "stack.json"
ENGINES = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")


@pytest.fixture(autouse=True)
def alone_in_this_checkout() -> Iterator[None]:
    """No other test's stack may write or remove the record this test reads."""
    with stacks_in_this_checkout(exclusive=True):
        yield


def test_the_audit_cli_finds_the_running_stack_and_the_file_goes_with_it(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENGINES and not k.startswith("SETACCOUNTS_")}
    env.update({"SETACCOUNTS_PORT": str(port), "SETACCOUNTS_ENGINES": "embedded"})
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "scripts/run_stack.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (
            STACK_FILE.is_file() and json.loads(STACK_FILE.read_text()).get("pid") == stack.pid
        ):
            assert stack.poll() is None, log.read_text()
            time.sleep(0.5)
        info = json.loads(STACK_FILE.read_text())
        assert info["api_url"] == f"http://127.0.0.1:{port}/fhir/R4"
        assert {"kafka_bootstrap_servers", "mongodb_uri", "kafka_security_protocol"} <= set(info)
        assert STACK_FILE.stat().st_mode & 0o777 == 0o600  # it may hold the broker's password

        audit = subprocess.run(
            [sys.executable, "-m", "setaccounts_audit", "verify"],
            cwd=ROOT / "docs",  # any directory of the checkout
            env={k: v for k, v in env.items() if k != "SETACCOUNTS_PORT"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "using the stack `make run` started" in audit.stderr
        assert "no drift" in audit.stdout
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        stack.wait(90)
    assert not STACK_FILE.exists()
