"""The `$set-accounts` operation's Parameters: the body a client sends and the counts it answers."""

from __future__ import annotations

from typing import Any


def parameters(*accounts: Any, propagate: Any = None) -> dict[str, Any]:
    """The operation's Parameters body (values are not checked: tests send bad ones on purpose)."""
    parameter: list[dict[str, Any]] = [
        {"name": "accounts", "valueReference": {"reference": a}} for a in accounts
    ]
    if propagate is not None:
        parameter.append({"name": "propagate", "valueBoolean": propagate})
    return {"resourceType": "Parameters", "parameter": parameter}


def outputs(body: dict[str, Any]) -> dict[str, int]:
    """The operation's answer as {"resourcesUpdated": n, "resourcesChanged": m}."""
    return {p["name"]: p["valueInteger"] for p in body["parameter"]}
