"""Applier (apply): applies a consumed batch of member updates through the store's one propagation write
(one read, one unordered bulk write), then reports each command's outcomes per partition on the results
topic.

Idempotent by the members' marks; guarded by each member's version, so a concurrent normal write is
never overwritten (the member is read again and recomputed).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass

from setaccounts.events import (
    RESULTS,
    BatchApplied,
    Effect,
    EndOfCommand,
    Event,
    MemberUpdate,
    PartitionDone,
)
from setaccounts.metrics import MEMBER_UPDATES
from setaccounts.store.propagation import Application
from setaccounts_propagator.ports import Jobs, Propagates, Publisher
from setaccounts_propagator.role import Item, RoleHandler


@dataclass
class Applier(RoleHandler):
    jobs: Jobs
    propagation: Propagates
    publisher: Publisher

    def order_key(self, item: Item) -> Hashable:
        """The loop applies each command's updates in order, and different commands side by side, so a
        small command's few updates never wait behind a large one's batch."""
        command_id: str = item.event.command_id
        return command_id

    def touches(self, item: Item) -> Collection[str]:
        """Two commands' updates of one member are applied in the order they were emitted."""
        return (item.event.member,) if isinstance(item.event, MemberUpdate) else ()

    async def __call__(self, items: Sequence[Item]) -> None:
        updates = [(i.record.partition, i.event) for i in items if isinstance(i.event, MemberUpdate)]
        outcomes = await self.apply([u for _, u in updates]) if updates else []
        for outcome, count in Counter(outcomes).items():  # one increment per kind (~3 µs each)
            MEMBER_UPDATES.labels(outcome.value).inc(count)
        await self._report(items, [(p, u, o) for (p, u), o in zip(updates, outcomes, strict=True)])

    async def apply(self, updates: Sequence[MemberUpdate]) -> list[Effect]:
        """Apply updates in order, skipping cancelled commands; returns one outcome per update."""
        cancelled = await self.jobs.cancelled_among(sorted({u.command_id for u in updates}))
        pending = [i for i, u in enumerate(updates) if u.command_id not in cancelled]
        outcomes: list[Effect] = [Effect.CANCELLED] * len(updates)
        applied = await self.propagation.apply(
            [
                Application(u.member, u.target, u.target_seq, u.command_id, u.add, u.remove)
                for u in (updates[i] for i in pending)
            ]
        )
        for i, outcome in zip(pending, applied, strict=True):
            outcomes[i] = outcome
        return outcomes

    async def _report(self, items: Sequence[Item], applied: list[tuple[int, MemberUpdate, Effect]]) -> None:
        """Results per (command, partition) in offset order, then end-of-command markers, all acknowledged."""
        entries: dict[tuple[str, int], list[tuple[str, Effect]]] = defaultdict(list)
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
        await self.publisher.publish(RESULTS, *events)
