"""`.run/stack.json`: where the stack that `make run` started in this checkout listens.

`make run` writes it once the API is ready and removes it when it stops. Command-line tools
(`setaccounts-audit`, `examples/publish_command.py`) read it when neither `KAFKA_BOOTSTRAP_SERVERS` nor
`MONGODB_URI` is set, so a newcomer can run them next to `make run` without exporting anything. A file left
behind by a stack killed with SIGKILL is ignored: it names the process that wrote it, and that process is
gone. It holds addresses and names, and the embedded broker's SASL credentials: it is created readable by
its owner only (mode 0600), in the checkout's `.run/`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

RELATIVE_PATH = Path(".run") / "stack.json"
ENGINE_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URI")
# stack.json key -> the environment variable the services read it from
_VARIABLES = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "mongodb_uri": "MONGODB_URI",
    "mongodb_database": "SETACCOUNTS_MONGODB_DATABASE",
    "topic_prefix": "SETACCOUNTS_TOPIC_PREFIX",
    "kafka_security_protocol": "SETACCOUNTS_KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "SETACCOUNTS_KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "SETACCOUNTS_KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "SETACCOUNTS_KAFKA_SASL_PASSWORD",
    "auth_issuer": "SETACCOUNTS_AUTH_ISSUER",
    "auth_audience": "SETACCOUNTS_AUTH_AUDIENCE",
    "auth_jwks_file": "SETACCOUNTS_AUTH_JWKS_FILE",
    "auth_jwks_url": "SETACCOUNTS_AUTH_JWKS_URL",
}
HINT = (
    "no running stack found: start one with `make run` in this checkout (the tools then find it through "
    ".run/stack.json), or set KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI to your servers"
)


def write(workdir: Path, env: Mapping[str, str], api_url: str) -> Path:
    """Record the running stack (called by `make run` once the API answers)."""
    info: dict[str, Any] = {"pid": os.getpid(), "api_url": api_url}
    info.update({key: env[name] for key, name in _VARIABLES.items() if name in env})
    path = workdir / RELATIVE_PATH.name
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(json.dumps(info, indent=2) + "\n")  # mode 0600 from the start: it may hold a password
    temporary.replace(path)
    return path


def remove(workdir: Path) -> None:
    """Remove the record if it is this process's (a later stack in the same checkout may have replaced it)."""
    path = workdir / RELATIVE_PATH.name
    try:
        recorded = json.loads(path.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded in (None, os.getpid()):
        path.unlink(missing_ok=True)


def find(start: Path | None = None) -> dict[str, Any] | None:
    """The stack file of a running stack in `start` (default: the current directory) or a parent."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        path = directory / RELATIVE_PATH
        if path.is_file():
            try:
                info: dict[str, Any] = json.loads(path.read_text())
            except (OSError, ValueError):
                return None
            return info if _alive(info.get("pid")) else None
    return None


def use_running_stack(
    environ: MutableMapping[str, str] | None = None, start: Path | None = None
) -> dict[str, Any] | None:
    """Without engine addresses in the environment, take them (and the broker's credentials, the topic
    prefix, database and the development token settings) from the running stack's file; returns what was
    used, or None."""
    environ = os.environ if environ is None else environ
    if any(name in environ for name in ENGINE_VARIABLES):
        return None
    info = find(start)
    if info is None:
        return None
    user_auth = any(name.startswith("SETACCOUNTS_AUTH_") for name in environ)
    for key, name in _VARIABLES.items():
        if key in info and not (user_auth and key.startswith("auth_")):
            environ.setdefault(name, str(info[key]))
    return info


def engines_unset(environ: Mapping[str, str] | None = None) -> bool:
    """True when neither the user nor a stack file named the engines (the defaults are in use)."""
    environ = os.environ if environ is None else environ
    return not any(name in environ for name in ENGINE_VARIABLES)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
