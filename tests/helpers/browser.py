"""A real browser for the console tests: Debian's Chromium driven by Playwright (its driver ships in the
wheel; no browser is ever downloaded), and where a failed test's screenshot is kept."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(os.environ.get("SETACCOUNTS_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "artifacts")


def find_chromium() -> str | None:
    """The system's Chromium (`apt-get install -y chromium`), or None."""
    for candidate in CHROMIUM_CANDIDATES:
        found = candidate if os.access(candidate, os.X_OK) else shutil.which(candidate)
        if found:
            return found
    return None


def screenshot_path(test_name: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in test_name)
    return ARTIFACTS / f"{safe}.png"
