"""How the services are started as processes, the same for `make run`, the tests and the benchmarks."""

from __future__ import annotations

import sys


def api_command(host: str, port: int, *options: str) -> list[str]:
    """The API under uvicorn on `host:port` (settings from the environment)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "setaccounts_api.app:create_app",
        "--host",
        host,
        "--port",
        str(port),
        *options,
    ]


def propagator_command(*roles: str) -> list[str]:
    """The propagator running `roles` (all three when none is named)."""
    argv = [sys.executable, "-m", "setaccounts_propagator", "run"]
    for role in roles or ("all",):
        argv += ["--role", role]
    return argv
