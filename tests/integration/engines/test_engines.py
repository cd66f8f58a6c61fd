"""Engine resolution order and the errors a person sees when an engine cannot start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from setaccounts_dev.engines import EngineError, engines
from setaccounts_dev.engines.tansu import start_tansu

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_servers_from_the_environment_win_and_nothing_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    monkeypatch.setenv("MONGODB_URI", "mongodb://mongo.example:27017")
    secured = {
        "SETACCOUNTS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SETACCOUNTS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "SETACCOUNTS_KAFKA_SASL_USERNAME": "svc",
        "SETACCOUNTS_KAFKA_SASL_PASSWORD": "s3cret",
    }
    for name, value in secured.items():
        monkeypatch.setenv(name, value)
    with engines() as found:
        assert (found.kind, found.kafka_bootstrap_servers, found.mongodb_uri) == (
            "environment",
            "kafka.example:9092",
            "mongodb://mongo.example:27017",
        )
        assert found.as_env().items() >= secured.items()  # the servers' credentials go with them
        assert "s3cret" not in repr(found)


def test_only_one_server_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    monkeypatch.delenv("MONGODB_URI", raising=False)
    with pytest.raises(EngineError, match="both"), engines():
        pass


def test_busy_port_is_reported_even_though_tansu_exits_0(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EngineError) as error:
            start_tansu(tmp_path, port=port)
    assert "port busy" in str(error.value) or "did not listen" in str(error.value)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_setaccounts_engines_stops_its_engines_and_removes_their_data(tmp_path: Path, stop: int) -> None:
    """`setaccounts-engines` runs until a signal, then stops what it started and leaves no data behind:
    Ctrl-C and `kill` alike (the broker is Tansu here, the quickest to start)."""
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")}
    env |= {"TMPDIR": str(tmp_path), "SETACCOUNTS_EMBEDDED_KAFKA": "tansu"}
    script = Path(sys.executable).with_name("setaccounts-engines")
    process = subprocess.Popen([str(script)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("kafka="), first
        kafka_port = int(first.split()[0].rpartition(":")[2])
        assert any(tmp_path.iterdir()), "the engines keep their data and variables under TMPDIR"
        process.send_signal(stop)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert list(tmp_path.iterdir()) == [], "data and variables removed"
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", kafka_port)) != 0, "the broker was stopped"
