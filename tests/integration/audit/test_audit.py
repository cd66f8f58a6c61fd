"""The audit CLI against a scripted history: the log reproduces what the API answered, verify finds a
corrupted member by its ref, and a re-drive repairs it without touching the original job."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand
from setaccounts.kafka import make_producer, publish
from setaccounts.settings import Settings
from setaccounts_audit.cli import EXIT_DRIFT, EXIT_REFUSED, audit_log, audit_redrive, audit_verify
from setaccounts_audit.command_log import CommandRecord
from setaccounts_audit.render import Format
from setaccounts_audit.replay import load_log
from setaccounts_audit.verify import verify_store
from tests.helpers.auth import ADMIN_SUBJECT, Issuer
from tests.helpers.jobs import wait_final
from tests.helpers.resources import Seed, patient_with_members

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Db = AsyncDatabase[dict[str, Any]]
O1, O2, O3, O4, O5 = (f"Organization/o{i}" for i in range(1, 6))
CORRUPTED = "Observation/p1-obs-000003"


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    """The real console entry point in a subprocess: exit code and stdout."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "setaccounts_audit",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode() + err.decode()


async def records_when(settings: Settings, ready: Any, seconds: float = 30) -> list[CommandRecord]:
    """The log once `ready(records)` holds (results arrive asynchronously)."""
    deadline = time.monotonic() + seconds
    while True:
        records = (await load_log(settings, progress=False)).log.records()
        if ready(records) or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.3)


async def publish_direct(settings: Settings, command: SetAccountsCommand) -> None:
    """What another service does: publish to the commands topic, keyed by target."""
    producer: AIOKafkaProducer = make_producer(settings)
    await producer.start()
    try:
        await publish(producer, settings.topics.commands, command)
    finally:
        await producer.stop()


async def test_log_verify_and_redrive_over_a_scripted_history(
    settings: Settings,
    db: Db,
    api: Any,
    propagator: None,
    seed: Seed,
    set_accounts: Any,
    audit_env: dict[str, str],
    issuer: Issuer,
) -> None:
    shared = {
        "resourceType": "Observation",
        "id": "shared",
        "status": "final",
        "code": {"text": "bp"},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Patient/p2"}],
    }
    await seed(
        *patient_with_members("p1", 8),
        *patient_with_members("p2", 5),
        shared,
        *patient_with_members("big", 4000),
    )

    # The script: what the API answered, in order.
    answers = [
        await set_accounts.run("Patient/p1", O1, propagate=True),
        await set_accounts.run("Patient/p2", O2, propagate=True),
        await set_accounts.run("Patient/p1", O1, O3, propagate=True),
    ]
    ghost = SetAccountsCommand(
        command_id=str(uuid.uuid4()), target="Patient/ghost", accounts=[O1], requested_by="other-service"
    )
    await publish_direct(settings, ghost)
    await wait_final(db, ghost.command_id)
    answers.append(await set_accounts.wait(ghost.command_id))
    big = await set_accounts.start("Patient/big", O4, propagate=True)
    cancel = await set_accounts.cancel(big)
    assert cancel.status_code == 202, cancel.text
    answers.append(await set_accounts.wait(big))
    answers.append(await set_accounts.run("Patient/p2", propagate=True))
    answers.append(await set_accounts.run("Patient/p2", O5, propagate=False))

    assert [a.status for a in answers] == ["completed"] * 3 + ["error", "cancelled"] + ["completed"] * 2
    assert [(a.updated, a.changed) for a in answers[:3]] == [(10, 10), (7, 7), (10, 10)]
    assert answers[3].http_status == 404
    assert "does not exist" in json.dumps(answers[3].body)

    # audit log reproduces it: same commands, order, statuses and counts.
    records = await records_when(settings, lambda rs: len(rs) == 7 and all(r.status != "pending" for r in rs))
    assert [r.command_id for r in records] == [a.command_id for a in answers]
    assert [r.status for r in records] == [a.status for a in answers]
    for record, answer in zip(records, answers, strict=True):
        if answer.status == "completed":
            assert (record.resources_updated, record.resources_changed) == (answer.updated, answer.changed)
    assert [r.target for r in records] == [
        "Patient/p1",
        "Patient/p2",
        "Patient/p1",
        "Patient/ghost",
        "Patient/big",
        "Patient/p2",
        "Patient/p2",
    ]
    assert records[2].accounts_before == [O1]
    assert records[2].accounts_after == [O1, O3]
    assert (records[0].expected, records[1].expected) == (9, 6)
    assert records[3].requested_by == "other-service"
    assert records[3].diagnostics == "target Patient/ghost does not exist"
    # the token's subject, not the X-Requested-By header the client also sent
    assert (records[0].requested_by, records[4].cancel_requested_by) == (ADMIN_SUBJECT, ADMIN_SUBJECT)
    assert records[6].propagate is False

    out = io.StringIO()
    assert await audit_log(settings, out, fmt=Format.JSONL) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["command_id"], line["status"]) for line in lines] == [
        (a.command_id, a.status) for a in answers
    ]
    out = io.StringIO()
    await audit_log(settings, out, since=records[5].requested_at, fmt=Format.CSV)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [row["command_id"] for row in rows] == [r.command_id for r in records[5:]]

    # verify: clean, then a corrupted member is reported by its exact ref.
    out = io.StringIO()
    assert await audit_verify(settings, out) == 0, out.getvalue()
    assert "no drift" in out.getvalue()
    corrupt = {"$set": {"resource.meta.accounts": [{"reference": O1}]}}  # o3 lost behind the store's back
    await db.resources.update_one({"_id": CORRUPTED}, corrupt)
    out = io.StringIO()
    assert await audit_verify(settings, out) == EXIT_DRIFT
    print(out.getvalue())
    assert CORRUPTED in out.getvalue()
    drifts = (await verify_store(db, records)).drifts
    member = next(d for d in drifts if d.kind == "member-accounts")
    assert (member.ref, member.expected, member.found, member.command_id) == (
        CORRUPTED,
        [O1, O3],
        [O1],
        answers[2].command_id,
    )
    assert {(d.kind, d.ref) for d in drifts} == {
        ("member-accounts", CORRUPTED),
        ("compartment", CORRUPTED),
        ("index", CORRUPTED),
    }
    code, printed = await run_cli(audit_env, "verify")
    assert code == EXIT_DRIFT, printed
    assert CORRUPTED in printed

    # redrive: refused for an older command, then the last one repairs the member.
    original = await db.jobs.find_one({"_id": answers[2].command_id})
    ops = issuer.token("ops", admin=True)
    assert await audit_redrive(settings, io.StringIO(), answers[0].command_id, token=ops) == EXIT_REFUSED
    assert await audit_redrive(settings, io.StringIO(), "no-such-command", token=ops) == EXIT_REFUSED
    code, printed = await run_cli(audit_env, "redrive", "--command", answers[0].command_id, "--token", ops)
    assert code == EXIT_REFUSED
    assert "not the last command for Patient/p1" in printed
    # only an administrator's verified token may re-drive
    user = issuer.token("user-a", accounts=[O1])
    for token in (None, user, issuer.token("ops", admin=True, audience="another-api")):
        assert (
            await audit_redrive(settings, io.StringIO(), answers[2].command_id, token=token) == EXIT_REFUSED
        )
    code, printed = await run_cli(audit_env, "redrive", "--command", answers[2].command_id, "--token", user)
    assert code == EXIT_REFUSED and "reserved to administrators" in printed
    out = io.StringIO()
    assert await audit_redrive(settings, out, answers[2].command_id, token=ops) == 0
    assert "finished: completed, resourcesUpdated=10, resourcesChanged=1" in out.getvalue()

    member = await db.resources.find_one({"_id": CORRUPTED})
    assert member is not None
    assert [a["reference"] for a in member["resource"]["meta"]["accounts"]] == [O1, O3]
    out = io.StringIO()
    assert await audit_verify(settings, out) == 0, out.getvalue()
    code, printed = await run_cli(audit_env, "verify")
    assert code == 0, printed

    after = await db.jobs.find_one({"_id": answers[2].command_id})
    assert original is not None and after is not None
    counts = ("status", "resources_updated", "resources_changed")
    assert {k: after[k] for k in counts} == {k: original[k] for k in counts}
    records = await records_when(settings, lambda rs: len(rs) == 8 and rs[-1].status != "pending")
    redriven = records[-1]
    assert (redriven.redrive_of, redriven.requested_by, redriven.status) == (
        answers[2].command_id,
        "ops",
        "completed",
    )
    assert (redriven.resources_updated, redriven.resources_changed) == (10, 1)
    assert (records[2].resources_updated, records[2].resources_changed) == (10, 10)
