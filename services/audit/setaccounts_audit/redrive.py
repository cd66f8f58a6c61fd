"""Re-apply a command by publishing a new one (new id, same content, `redrive_of` the original).

A new command id keeps the original job and its counts untouched, and the planner gives it a new per-target
sequence number, so the members' marks let it through. Only the target's last command may be re-driven:
re-applying an older one would undo the newer ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from setaccounts.auth.tokens import InvalidToken, KeysUnavailable, TokenVerifier
from setaccounts.events import CommandFinished, SetAccountsCommand
from setaccounts.kafka import make_producer, publish
from setaccounts.profile import detect_broker
from setaccounts.settings import Settings
from setaccounts_audit.command_log import CommandRecord, by_target
from setaccounts_audit.replay import load_log, watch_results


class RedriveRefused(Exception):
    """The re-drive would be unsafe or makes no sense; not retriable, the message says why."""

    retriable = False


async def requester(settings: Settings, token: str | None) -> str:
    """Who asks for the re-drive: the subject of an administrator's token, verified like the API does
    (same `SETACCOUNTS_AUTH_*` settings); anything else is refused."""
    if not token:
        raise RedriveRefused(
            "a re-drive needs an administrator's token: pass --token or set SETACCOUNTS_TOKEN"
        )
    try:
        principal = await TokenVerifier(settings).verify(token)
    except ValueError as exc:  # the auth settings are missing
        raise RedriveRefused(str(exc)) from exc
    except (InvalidToken, KeysUnavailable) as exc:
        raise RedriveRefused(f"the token was refused: {exc}") from exc
    if not principal.admin:
        raise RedriveRefused(f"{principal.requested_by} may not re-drive: it is reserved to administrators")
    return principal.requested_by


def choose(records: Sequence[CommandRecord], command_id: str, *, force: bool = False) -> CommandRecord:
    """The command to re-drive, or RedriveRefused when unknown or (without `force`) not the target's last."""
    original = next((r for r in records if r.command_id == command_id), None)
    if original is None:
        raise RedriveRefused(f"command {command_id} is not in the commands or results topic")
    if original.rejected:
        raise RedriveRefused(f"command {command_id} was rejected as invalid: there is nothing to re-apply")
    later = by_target(records)[original.target]
    newer = later[later.index(original) + 1 :]
    if newer and not force:
        raise RedriveRefused(
            f"command {command_id} is not the last command for {original.target}: {len(newer)} newer "
            f"command(s) follow it (last: {newer[-1].command_id}); re-applying it would undo them. "
            f"Re-drive {newer[-1].command_id} instead, or pass --force if undoing them is intended."
        )
    return original


def redrive_command(original: CommandRecord, by: str) -> SetAccountsCommand:
    return SetAccountsCommand(
        command_id=str(uuid.uuid4()),
        target=original.target,
        accounts=list(original.accounts),
        mode=original.mode,
        propagate=original.propagate,
        requested_by=by,
        redrive_of=original.command_id,
    )


async def redrive(
    settings: Settings,
    command_id: str,
    *,
    by: str = "audit",
    force: bool = False,
    wait_seconds: float = 120.0,
) -> tuple[SetAccountsCommand, CommandFinished]:
    """Publish the re-drive and wait for its final answer on the results topic."""
    loaded = await load_log(settings, progress=False)
    original = choose(loaded.log.records(), command_id, force=force)
    command = redrive_command(original, by)
    producer = make_producer(settings, idempotent=(await detect_broker(settings)).idempotent_producer)
    await producer.start()
    try:
        async with watch_results(settings) as wait:
            await publish(producer, settings.topics.commands, command)
            finished = await wait(command.command_id, wait_seconds)
    finally:
        await producer.stop()
    return command, finished
