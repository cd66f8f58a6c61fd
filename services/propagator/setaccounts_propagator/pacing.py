"""Fairness between commands: how far a fan-out runs ahead of the applier, and how long an applier batch is.

Every command's member updates share the updates topic, and each partition is applied in order, so an
update waits behind whatever was emitted before it. Two bounds keep that wait short for every command
(docs/architecture.md, "Fairness"):

- `Lead`: a command's fan-out keeps its emitted but unapplied updates under `seconds` of the pace the
  applier is applying them at (measured from the job's `applied` count, which the aggregator writes),
  never under `least` and never over `most`, which is less than the applier holds in flight: a command
  started behind a 100,000-member job finds a short queue, all of it within the applier's reach, and the
  applier runs its updates beside the large job's (`ConsumerLoop.concurrency`). The planner asks the job
  before each piece it emits (`FanOutPace.room`), which also notices a cancel within a piece.
- `BatchSizer`: the applier sizes each poll from the time an update took in the batches before, so a batch
  lasts about `seconds`, long enough that a batch's fixed costs (a jobs read, the results, a commit) stay
  small and short enough that the fan-out sees progress several times per lead. On a fast store that is
  the most a batch may hold anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from setaccounts_propagator.ports import Jobs

WINDOW_SECONDS = 3.0  # the applier's pace is measured over about this long
LONGEST_WAIT = 0.25  # longest a waiting fan-out goes without asking the job again
SHORTEST_WAIT = 0.02


@dataclass
class Lead:
    """How many more updates a fan-out may emit, from what it emitted and what has been applied."""

    seconds: float
    least: int
    most: int  # never more: the applier must be able to hold every queued update at once
    _seen: deque[tuple[float, int]] = field(default_factory=deque)  # (when, applied), oldest first

    def observe(self, at: float, applied: int) -> None:
        self._seen.append((at, applied))
        while len(self._seen) > 2 and at - self._seen[1][0] >= WINDOW_SECONDS:
            self._seen.popleft()

    @property
    def pace(self) -> float:
        """Updates applied per second over the window; 0 until two observations tell."""
        if len(self._seen) < 2:
            return 0.0
        (first, applied_first), (last, applied_last) = self._seen[0], self._seen[-1]
        return 0.0 if last <= first else max(0.0, (applied_last - applied_first) / (last - first))

    @property
    def bound(self) -> int:
        """Most unapplied updates allowed now."""
        return max(self.least, min(self.most, int(self.pace * self.seconds)))

    def allowance(self, emitted: int, applied: int) -> int:
        return max(0, self.bound - (emitted - applied))

    def wait(self, emitted: int, applied: int) -> float:
        """How long to wait before asking again: until about half the bound should have been applied."""
        pace = self.pace
        if pace <= 0:
            return SHORTEST_WAIT * 2
        excess = (emitted - applied) - self.bound / 2
        return min(LONGEST_WAIT, max(SHORTEST_WAIT, excess / pace))


@dataclass
class FanOutPace:
    """One command's fan-out, paced by its job's progress."""

    jobs: Jobs
    command_id: str
    lead: Lead

    _applied: int = 0  # as last read

    async def room(self, emitted: int) -> int | None:
        """Updates the fan-out may emit now, waiting until it may emit some; None when the job ended.
        Within the least lead there is always room: a small command emits without a read of its job (a
        cancel is still seen at the page's checkpoint)."""
        if emitted - self._applied < self.lead.least:
            return self.lead.least - (emitted - self._applied)
        while True:
            job = await self.jobs.get(self.command_id)
            if job is None or job.finished:
                return None
            self._applied = job.applied
            self.lead.observe(time.monotonic(), job.applied)
            allowed = self.lead.allowance(emitted, job.applied)
            if allowed > 0:
                return allowed
            await asyncio.sleep(self.lead.wait(emitted, job.applied))


@dataclass
class BatchSizer:
    """The next batch's size: `seconds` of the time per record measured so far, within [least, most]."""

    seconds: float
    most: int
    least: int = 10
    _per_record: float | None = None

    def size(self) -> int:
        if self._per_record is None:
            return self.least
        return min(self.most, max(self.least, int(self.seconds / self._per_record)))

    def observe(self, records: int, seconds: float) -> None:
        if records <= 0:
            return
        sample = seconds / records
        self._per_record = sample if self._per_record is None else (self._per_record + sample) / 2
