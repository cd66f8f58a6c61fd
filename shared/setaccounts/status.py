"""One status vocabulary for jobs, `CommandFinished.status` and the audit log."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class JobStatus(StrEnum):
    ACCEPTED = "accepted"
    PLANNING = "planning"
    APPLYING = "applying"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"


# How a command ended: the values of `CommandFinished.status` (a Literal, so the JSON Schema lists them).
FinalStatus = Literal["completed", "error", "cancelled"]
TERMINAL = frozenset(JobStatus(s) for s in get_args(FinalStatus))
