"""`setaccounts-engines`: start the engines and print how to reach them, until interrupted."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

from setaccounts_dev.engines import engines
from setaccounts_dev.engines.processes import write_private


def main() -> None:
    """`setaccounts-engines`: start the engines, print their addresses (and where the variables that reach
    them are, password included: a file only its owner may read), run until SIGINT or SIGTERM, then stop
    the engines and remove their data (both signals are blocked and waited for: the default action of a
    SIGTERM would end the process before any clean-up)."""
    stopping = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    with engines() as found, tempfile.TemporaryDirectory(prefix="setaccounts-engines-env-") as private:
        variables = Path(private) / "engines.env"
        write_private(variables, "".join(f"export {k}='{v}'\n" for k, v in found.as_env().items()))
        print(
            f"kafka={found.kafka_bootstrap_servers} mongodb={found.mongodb_uri} ({found.description})\n"
            f"variables for the services and tools: source {variables}",
            flush=True,
        )
        signal.sigwait(stopping)
