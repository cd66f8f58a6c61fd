"""The CapabilityStatement: every resource type, its interactions, search params and the operation."""

from __future__ import annotations

import httpx
import pytest

from setaccounts.fhir.references import RESOURCE_TYPES

pytestmark = pytest.mark.integration
BASE = "http://testserver/fhir/R4"


async def test_capability_statement(api: httpx.AsyncClient) -> None:
    response = await api.get("/metadata")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert statement["status"] == "active"
    assert "json" in statement["format"]
    [rest] = statement["rest"]
    assert rest["mode"] == "server"
    operations = [
        {"name": name, "definition": f"{BASE}/OperationDefinition/{name}"}
        for name in ("set-accounts", "add-accounts", "remove-accounts")
    ]
    assert rest["operation"] == operations
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "search-system"}
    assert {p["name"] for p in rest["searchParam"]} >= {"_id", "_compartment", "_type"}

    by_type = {r["type"]: r for r in rest["resource"]}
    assert set(by_type) == RESOURCE_TYPES
    for resource in by_type.values():
        assert {i["code"] for i in resource["interaction"]} == {
            "read",
            "vread",
            "create",
            "update",
            "delete",
            "history-instance",
            "search-type",
        }
        assert resource["readHistory"] is True
        assert {p["name"] for p in resource["searchParam"]} == {"_id", "_compartment"}
        assert resource["operation"] == operations
        assert resource["updateCreate"] is True
