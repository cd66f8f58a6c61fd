"""`.run/stack.json`: written by `make run`, found by the tools only while the stack that wrote it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from setaccounts import stack_file

ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:39092",
    "MONGODB_URI": "mongodb://127.0.0.1:37017/?directConnection=true",
    "SETACCOUNTS_TOPIC_PREFIX": "dev.",
    "SETACCOUNTS_AUTH_ISSUER": "setaccounts-dev",
    "SETACCOUNTS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "SETACCOUNTS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "SETACCOUNTS_KAFKA_SASL_USERNAME": "setaccounts",
    "SETACCOUNTS_KAFKA_SASL_PASSWORD": "secret",
    "SETACCOUNTS_AUTH_ADMIN_VALUE": "not-recorded",
}


def written(tmp_path: Path) -> Path:
    run = tmp_path / ".run"
    run.mkdir()
    return stack_file.write(run, ENV, "http://127.0.0.1:8000/fhir/R4")


def test_the_tools_take_the_running_stack_and_its_broker_credentials_from_a_parent_directory(
    tmp_path: Path,
) -> None:
    path = written(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the broker's password: its owner's only
    assert "not-recorded" not in path.read_text()
    nested = tmp_path / "docs" / "events"
    nested.mkdir(parents=True)
    environ: dict[str, str] = {}
    info = stack_file.use_running_stack(environ, start=nested)
    assert info is not None and info["api_url"] == "http://127.0.0.1:8000/fhir/R4"
    assert environ == {
        "KAFKA_BOOTSTRAP_SERVERS": ENV["KAFKA_BOOTSTRAP_SERVERS"],
        "MONGODB_URI": ENV["MONGODB_URI"],
        "SETACCOUNTS_TOPIC_PREFIX": "dev.",
        "SETACCOUNTS_AUTH_ISSUER": "setaccounts-dev",
        "SETACCOUNTS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SETACCOUNTS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "SETACCOUNTS_KAFKA_SASL_USERNAME": "setaccounts",
        "SETACCOUNTS_KAFKA_SASL_PASSWORD": "secret",
    }
    assert not stack_file.engines_unset(environ)


def test_addresses_in_the_environment_win_and_user_auth_settings_are_kept(tmp_path: Path) -> None:
    written(tmp_path)
    mine = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    assert stack_file.use_running_stack(mine, start=tmp_path) is None
    assert mine == {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    auth = {"SETACCOUNTS_AUTH_ISSUER": "https://sso.example.org"}
    assert stack_file.use_running_stack(auth, start=tmp_path) is not None
    assert auth["SETACCOUNTS_AUTH_ISSUER"] == "https://sso.example.org"


def test_a_file_left_by_a_killed_stack_or_a_stopped_one_is_ignored(tmp_path: Path) -> None:
    path = written(tmp_path)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": int(gone.stdout)}))
    assert stack_file.find(tmp_path) is None
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": os.getpid()}))
    assert stack_file.find(tmp_path) is not None
    stack_file.remove(tmp_path / ".run")
    assert stack_file.find(tmp_path) is None
    environ: dict[str, str] = {}
    assert stack_file.use_running_stack(environ, start=tmp_path) is None
    assert stack_file.engines_unset(environ)


def test_a_stack_that_stops_leaves_the_record_of_another_one_running_in_the_checkout(tmp_path: Path) -> None:
    path = written(tmp_path)
    other = {**json.loads(path.read_text()), "pid": os.getppid()}  # a live process, not this one
    path.write_text(json.dumps(other))
    stack_file.remove(tmp_path / ".run")
    assert json.loads(path.read_text()) == other, "another stack's record is not this one's to remove"
    path.write_text(json.dumps({**other, "pid": os.getpid()}))
    stack_file.remove(tmp_path / ".run")
    assert not path.exists()
