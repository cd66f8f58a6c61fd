"""Applier (apply): applies a consumed batch of member updates through the store's one propagation write
(one read, one unordered bulk write), then reports each command's outcomes per partition on the results
topic.

Idempotent by the members' marks; guarded by each member's version, so a concurrent normal write is
never overwritten (the member is read again and recomputed).
"""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from collections.abc import Sequence

from setaccounts.events import BatchApplied, EndOfCommand, Event, MemberUpdate, Outcome, PartitionDone
from setaccounts.kafka import publish_many
from setaccounts.metrics import MEMBER_UPDATES
from setaccounts.store.propagation import Application
from setaccounts_propagator.role import Item, RoleHandler


def _application(update: MemberUpdate) -> Application:
    return Application(
        update.member, update.target, update.target_seq, update.command_id, update.add, update.remove
    )


class Applier(RoleHandler):
    async def __call__(self, items: Sequence[Item]) -> None:
        updates = [(i.record.partition, i.event) for i in items if isinstance(i.event, MemberUpdate)]
        outcomes = await self.apply([u for _, u in updates]) if updates else []
        for outcome in outcomes:
            MEMBER_UPDATES.labels(outcome.value).inc()
        await self._report(items, [(p, u, o) for (p, u), o in zip(updates, outcomes, strict=True)])

    async def apply(self, updates: Sequence[MemberUpdate]) -> list[Outcome]:
        """Apply updates in order, skipping cancelled commands; returns one outcome per update.

        The batch is split into `apply_lanes` lanes by member, applied concurrently: while one lane's
        documents are decoded and recomputed here, another's reads and writes keep the store busy. Every
        update of a member is in the same lane, in batch order, so they still fold into one write. If a lane
        fails, the others are cancelled and the first failure is raised as it is (the consume loop tells an
        outage from a bad input by it); a retry redoes the whole batch, which the marks make harmless.
        """
        cancelled = await self.jobs.cancelled_among(sorted({u.command_id for u in updates}))
        outcomes: list[Outcome] = [Outcome.CANCELLED] * len(updates)
        lanes: list[list[int]] = [[] for _ in range(self.settings.apply_lanes)]
        for i, u in enumerate(updates):
            if u.command_id not in cancelled:
                lanes[zlib.crc32(u.member.encode()) % len(lanes)].append(i)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    (
                        lane,
                        group.create_task(self.propagation.apply([_application(updates[i]) for i in lane])),
                    )
                    for lane in lanes
                    if lane
                ]
        except ExceptionGroup as failed:  # the other lanes were cancelled: the batch is retried whole
            raise failed.exceptions[0] from None
        for lane, task in tasks:
            for i, outcome in zip(lane, task.result(), strict=True):
                outcomes[i] = outcome
        return outcomes

    async def _report(self, items: Sequence[Item], applied: list[tuple[int, MemberUpdate, Outcome]]) -> None:
        """Results per (command, partition) in offset order, then end-of-command markers, all acknowledged."""
        entries: dict[tuple[str, int], list[tuple[str, Outcome]]] = defaultdict(list)
        for partition, update, outcome in applied:
            entries[(update.command_id, partition)].append((update.member, outcome))
        events: list[Event] = [
            BatchApplied(command_id=cid, partition=p, entries=e) for (cid, p), e in entries.items()
        ]
        events += [
            PartitionDone(command_id=i.event.command_id, partition=i.record.partition)
            for i in items
            if isinstance(i.event, EndOfCommand)
        ]
        await publish_many(self.producer, self.settings.topics.results, events)
