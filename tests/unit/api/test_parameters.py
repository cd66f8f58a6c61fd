"""Reading the operation's Parameters: what is accepted and how bad input is refused."""

from __future__ import annotations

from typing import Any

import pytest

from setaccounts.fhir.outcomes import FhirError
from setaccounts_api.parameters import output, parse_input


def body(*params: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(params)}


def test_accounts_deduplicated_in_order_and_propagate_defaults_to_false() -> None:
    parsed = parse_input(
        body(
            *(
                {"name": "accounts", "valueReference": {"reference": r}}
                for r in ("Organization/b", "Organization/a", "Organization/b")
            )
        )
    )
    assert parsed.accounts == ["Organization/b", "Organization/a"]
    assert parsed.propagate is False


def test_no_parameters_clears_accounts() -> None:
    assert parse_input({"resourceType": "Parameters"}).accounts == []


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {"resourceType": "Bundle"},
        body({"name": "accounts", "valueReference": {"reference": "Organization"}}),
        body({"name": "accounts", "valueReference": {"reference": "http://x/Organization/1"}}),
        body({"name": "accounts", "valueReference": {"display": "no reference"}}),
        body({"name": "propagate", "valueBoolean": True}, {"name": "propagate", "valueBoolean": False}),
        body({"name": "propagate", "valueString": "true"}),
        body({"name": "other"}),
        {"resourceType": "Parameters", "parameter": {"name": "accounts"}},
    ],
)
def test_bad_input_is_a_400_with_a_reason(bad: Any) -> None:
    with pytest.raises(FhirError) as error:
        parse_input(bad)
    assert error.value.status == 400 and error.value.diagnostics


def test_output_shape() -> None:
    assert output(3, 1) == {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resourcesUpdated", "valueInteger": 3},
            {"name": "resourcesChanged", "valueInteger": 1},
        ],
    }


def test_dry_run_is_a_flag_and_add_or_remove_need_an_account() -> None:
    flag = body({"name": "dryRun", "valueBoolean": True})
    assert parse_input(flag).dry_run is True
    assert parse_input({"resourceType": "Parameters"}).dry_run is False
    for operation in ("add-accounts", "remove-accounts"):
        with pytest.raises(FhirError, match="at least one"):
            parse_input(flag, operation)
    twice = body(flag["parameter"][0], flag["parameter"][0])
    with pytest.raises(FhirError, match="dryRun"):
        parse_input(twice)
