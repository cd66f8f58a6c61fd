"""The operation's FHIR `Parameters` in and out, validated so bad input never reaches Kafka."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from setaccounts.events import Mode
from setaccounts.fhir.outcomes import invalid
from setaccounts.fhir.references import RESOURCE_TYPES, is_valid_id


@dataclass(frozen=True)
class SetAccountsInput:
    accounts: list[str]
    propagate: bool
    dry_run: bool = False


def _reference(param: dict[str, Any], index: int) -> str:
    where = [f"Parameters.parameter[{index}].valueReference"]
    value = param.get("valueReference")
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
        raise invalid("every 'accounts' parameter needs a valueReference with a reference", where)
    ref: str = value["reference"]
    kind, _, rid = ref.partition("/")
    if kind not in RESOURCE_TYPES or not is_valid_id(rid):
        raise invalid(f"account reference {ref!r} is not a Type/id reference to a known resource type", where)
    return ref


OPERATION_MODES: dict[str, Mode] = {"set-accounts": "set", "add-accounts": "add", "remove-accounts": "remove"}


def parse_input(body: Any, operation: str = "set-accounts") -> SetAccountsInput:
    """Read `accounts` (valueReference: 0..* for $set-accounts, 1..* for $add-accounts and
    $remove-accounts), `propagate` and `dryRun` (0..1 valueBoolean each) from a Parameters body."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise invalid("the body must be a FHIR Parameters resource")
    params = body.get("parameter", [])
    if not isinstance(params, list):
        raise invalid("Parameters.parameter must be a list")
    accounts: list[str] = []
    flags: dict[str, bool] = {}
    for index, param in enumerate(params):
        name = param.get("name") if isinstance(param, dict) else None
        if name == "accounts":
            accounts.append(_reference(param, index))
        elif name in ("propagate", "dryRun"):
            if name in flags or not isinstance(param.get("valueBoolean"), bool):
                raise invalid(
                    f"'{name}' must appear at most once, as a valueBoolean",
                    [f"Parameters.parameter[{index}]"],
                )
            flags[name] = param["valueBoolean"]
        else:
            raise invalid(
                f"unknown parameter {name!r}; expected 'accounts', 'propagate' or 'dryRun'",
                [f"Parameters.parameter[{index}]"],
            )
    if not accounts and OPERATION_MODES[operation] != "set":
        raise invalid(f"${operation} needs at least one 'accounts' parameter")
    return SetAccountsInput(
        list(dict.fromkeys(accounts)), flags.get("propagate", False), flags.get("dryRun", False)
    )


def output(updated: int, changed: int) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resourcesUpdated", "valueInteger": updated},
            {"name": "resourcesChanged", "valueInteger": changed},
        ],
    }


def operation_definition(operation: str = "set-accounts") -> dict[str, Any]:
    text = (Path(__file__).parent / "definitions" / f"{operation}.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded
