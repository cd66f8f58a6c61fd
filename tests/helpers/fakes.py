"""In-memory fakes of the propagator's own ports (`setaccounts_propagator.ports`), never of the drivers, for
fast unit tests of the role handlers.

Each keeps the contract of the store it stands for: `FakeJobStore` stores jobs as `JobStore` does (the
same guards: a finished job is never written, `start_plan` once, `save_aggregate` against `agg_rev`);
`FakePropagation` applies the real rule (`propagation.decide`: marks, sequence order, the same outcome on
a repeat) to the documents of a `FakeResourceStore`, and keeps every replaced version; `FakePublisher`
encodes every event as Kafka would carry it, partitions it as the default partitioner does, and hands the
records back as a consumer would poll them. `tests/integration/test_fakes_contract.py` holds the stores'
fakes to the real stores on the same steps.
"""

from __future__ import annotations

import copy
import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord

from setaccounts.events import COMMANDS, RESULTS, CancelRequested, Channel, Effect, Event, SetAccountsCommand
from setaccounts.events.wire import Encoded, partition_for
from setaccounts.jobs import (
    Aggregate,
    Job,
    JobStore,
    StaleJob,
    accepted_fields,
    aggregate_fields,
    planning_fields,
)
from setaccounts.kafka import encoded
from setaccounts.settings import Settings
from setaccounts.status import JobStatus
from setaccounts.store.meta import Document, accounts_of, prepare_write, tombstone
from setaccounts.store.propagation import Application, decide
from setaccounts.store.resources import ResourceStore
from setaccounts_propagator.bootstrap import ROLES, Stores
from setaccounts_propagator.role import Item, RoleHandler
from tests.helpers.resources import patient_with_members

StoredJob = dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


class FakeJobStore(JobStore):
    """`setaccounts.jobs.JobStore` over a dict of stored job documents (validated on every read, as there):
    every method that touches the collection is replaced; the steps that only set fields through `_set`
    (`mark_target_written`, `checkpoint`, `finish_plan`, `record_failure`, `cancel`) are the store's own."""

    def __init__(self) -> None:  # no collection: nothing of the store's own reaches a database
        self.documents: dict[str, StoredJob] = {}
        self.sequences: dict[str, int] = {}

    async def get(self, command_id: str) -> Job | None:
        found = self.documents.get(command_id)
        return None if found is None else Job.model_validate(copy.deepcopy(found))

    async def cancelled_among(self, command_ids: list[str]) -> set[str]:
        return {
            cid
            for cid in command_ids
            if self.documents.get(cid, {}).get("status") == JobStatus.CANCELLED.value
        }

    async def ensure(self, command: SetAccountsCommand, trace_id: str | None = None) -> Job:
        now = _now()
        self.documents.setdefault(
            command.command_id,
            {"_id": command.command_id, **accepted_fields(command, now, trace_id)},
        )
        job = await self.get(command.command_id)
        assert job is not None
        return job

    async def next_seq(self, target: str) -> int:
        self.sequences[target] = self.sequences.get(target, 0) + 1
        return self.sequences[target]

    async def start_plan(
        self, command_id: str, target_seq: int, accounts_before: list[str], members: int
    ) -> Job | None:
        stored = self.documents.get(command_id)
        if stored is not None and "target_seq" not in stored and not self._finished(stored):
            stored |= planning_fields(target_seq, accounts_before, members, _now())
        job = await self.get(command_id)
        return None if job is None or job.finished else job

    async def reject(self, command_id: str, target: str | None) -> bool:
        found = self.documents.setdefault(
            command_id,
            {
                "_id": command_id,
                "status": JobStatus.ACCEPTED.value,
                "target": target,
                "created_at": _now(),
                "http_status": 400,
                "rejected": True,
            },
        )
        return bool(found.get("rejected"))

    async def save_aggregate(self, job: Job, aggregate: Aggregate) -> None:
        stored = self.documents.get(job.id)
        if (
            stored is None
            or stored.get("agg_rev") != job.agg_rev
            or (aggregate.status is not None and self._finished(stored))
        ):
            raise StaleJob(job.id)
        stored |= copy.deepcopy(aggregate_fields(job, aggregate, _now()))

    @staticmethod
    def _finished(stored: StoredJob) -> bool:
        return Job.model_validate(stored).finished

    async def _set(self, command_id: str, fields: StoredJob) -> bool:
        """Set fields unless the job already ended; True when the job was updated."""
        stored = self.documents.get(command_id)
        if stored is None or self._finished(stored):
            return False
        stored |= {**copy.deepcopy(fields), "updated_at": _now()}
        return True


class FakeResourceStore:
    """The reads of `ResourceStore` the planner makes, over a dict of stored documents by `Type/id`."""

    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}

    def seed(self, *resources: dict[str, Any]) -> list[str]:
        """Store resources through the write rule, as `tests.helpers.resources.store_resources` does."""
        now = _now()
        documents = [prepare_write(r, None, now).document for r in resources]
        self.documents |= {d["_id"]: d for d in documents}
        return [d["_id"] for d in documents]

    def delete(self, ref: str) -> None:
        """What a FHIR delete leaves: a tombstone."""
        self.documents[ref] = tombstone(self.documents[ref], _now())

    def accounts(self, ref: str) -> list[str]:
        """The accounts of a live resource."""
        return accounts_of(self.documents[ref]["resource"])

    async def get(self, ref: str) -> Document | None:
        found = self.documents.get(ref)
        return copy.deepcopy(found)

    def _members(self, owner: str) -> list[str]:
        query = ResourceStore.members_filter(owner)
        return sorted(
            ref
            for ref, doc in self.documents.items()
            if query["members_of"] in (doc.get("members_of") or [])
            and not ("type" in query and doc.get("type") == "Patient")
        )

    async def count_members(self, owner: str) -> int:
        return len([ref for ref in self._members(owner) if ref != owner])

    async def stream_members(
        self, owner: str, after: str | None, batch_size: int
    ) -> AsyncGenerator[str, None]:
        for ref in self._members(owner):
            if after is None or ref > after:
                yield ref


class FakePropagation:
    """`Propagation.apply` in memory: the real rule applied in order, each write at once (several
    applications to one resource in a batch fold, as the real one folds them into one write)."""

    def __init__(self, resources: FakeResourceStore) -> None:
        self.resources = resources
        self.history: list[Document] = []  # every stored version replaced, as `HistoryStore.keep` keeps

    async def apply(self, applications: Sequence[Application]) -> list[Effect]:
        documents = self.resources.documents
        timestamp = _now()
        outcomes: list[Effect] = []
        replaced: dict[str, Document] = {}  # as stored before this batch: the one version it replaces
        for app in applications:
            document = documents.get(app.resource)
            if document is None or document.get("deleted"):
                outcomes.append(Effect.GONE)
                continue
            held = {
                p: accounts_of((documents.get(p) or {}).get("resource") or {})
                for p in document.get("members_of", ())
                if app.remove and p.startswith("Patient/") and p != app.target
            }
            applied = decide(app, document, held, timestamp)
            outcomes.append(Effect.CHANGED if applied.changed else Effect.UNCHANGED)
            if applied.write:
                replaced.setdefault(app.resource, document)
                documents[app.resource] = applied.document
        self.history += [d for r, d in replaced.items() if documents[r]["version"] != d["version"]]
        return outcomes


def command(target: str, *accounts: str, **fields: Any) -> SetAccountsCommand:
    """A propagating command with a fresh id (other fields as given)."""
    return SetAccountsCommand(
        command_id=str(uuid.uuid4()), target=target, accounts=list(accounts), propagate=True, **fields
    )


SendHook = Callable[[Channel, list[Event]], Awaitable[None]]


@dataclass
class FakePublisher:
    """A `Publisher` whose topics are lists: every event encoded as it goes on the wire and decoded back by
    its channel when taken, so a handler reads exactly what another one sent."""

    partition_count: int = 3
    after_send: SendHook | None = None  # called after each acknowledged send (a test's interleaving)
    records: dict[str, list[Item]] = field(default_factory=lambda: defaultdict(list))
    _taken: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    async def publish(self, channel: Channel, *events: Event) -> None:
        await self.send_encoded(channel, [encoded(e) for e in events])

    async def send_encoded(self, channel: Channel, records: Iterable[Encoded]) -> None:
        sent: list[Event] = []
        for record in records:
            partitions = await self.partitions(channel)
            partition = record.partition
            if partition is None:
                partition = partition_for(record.key, partitions)
            assert partition in partitions, f"no partition {partition} in {channel.name}"
            offset = sum(i.record.partition == partition for i in self.records[channel.name])
            consumed = ConsumerRecord(
                channel.name, partition, offset, 0, 0, record.key, record.value, None, 0, 0, record.headers
            )
            item = Item(consumed, channel.decode(record.value))
            self.records[channel.name].append(item)
            sent.append(item.event)
        if self.after_send is not None:
            await self.after_send(channel, sent)

    async def partitions(self, channel: Channel) -> list[int]:
        return list(range(self.partition_count))

    def events(self, channel: Channel, kind: type[Event] | None = None) -> list[Any]:
        """Every event sent to `channel` (of one kind, if given), in the order sent."""
        return [i.event for i in self.records[channel.name] if kind is None or isinstance(i.event, kind)]

    def take(self, channel: Channel) -> list[Item]:
        """What one poll of a consumer that read everything before returns: the records sent since the last
        take, partition by partition, in offset order within each."""
        start = self._taken[channel.name]
        self._taken[channel.name] = len(self.records[channel.name])
        fresh = self.records[channel.name][start:]
        return sorted(fresh, key=lambda i: (i.record.partition, i.record.offset))


@dataclass
class InMemory:
    """A propagator's stores and publisher in memory; its handlers are built as bootstrap builds them."""

    jobs: FakeJobStore = field(default_factory=FakeJobStore)
    resources: FakeResourceStore = field(default_factory=FakeResourceStore)
    publisher: FakePublisher = field(default_factory=FakePublisher)

    def __post_init__(self) -> None:
        self.propagation = FakePropagation(self.resources)

    async def ping(self) -> None:
        """Memory always answers."""

    @property
    def stores(self) -> Stores:
        return Stores(jobs=self.jobs, resources=self.resources, propagation=self.propagation, ping=self.ping)

    def handler(self, role: str, **settings: Any) -> RoleHandler:
        """The role's handler through `bootstrap.ROLES`, with these settings."""
        return ROLES[role].handler(Settings(**settings), self.stores, self.publisher)

    async def send(self, command: SetAccountsCommand) -> None:
        """What the API does with a command: create its job, publish it."""
        await self.jobs.ensure(command)
        await self.publisher.publish(COMMANDS, command)

    async def planned(self, members: int, **settings: Any) -> SetAccountsCommand:
        """Patient/p1 with `members` Observations, and a command giving them Organization/o1, planned."""
        self.resources.seed(*patient_with_members("p1", members))
        planned = command("Patient/p1", "Organization/o1")
        await self.send(planned)
        await self.consume("planner", **settings)
        return planned

    async def cancel(self, command_id: str) -> None:
        """What the API does on `DELETE` of a job's status URL: mark it cancelled, tell the aggregator."""
        job = await self.jobs.cancel(command_id, "someone")
        assert job is not None and job.cancelled_at is not None
        await self.publisher.publish(
            RESULTS, CancelRequested(command_id=command_id, requested_at=job.cancelled_at)
        )

    async def consume(self, role: str, **settings: Any) -> list[Item]:
        """One poll of the role's consumer (everything sent to its channel since its last poll), handled;
        returns the items it handled."""
        items = self.publisher.take(ROLES[role].reads)
        if items:
            await self.handler(role, **settings)(items)
        return items

    async def run(self, **settings: Any) -> None:
        """Every role in turn until nothing is left to consume."""
        while any([await self.consume(role, **settings) for role in ROLES]):
            pass
