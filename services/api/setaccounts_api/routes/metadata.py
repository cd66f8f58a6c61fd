"""`GET /metadata`: the CapabilityStatement, built from the same type list and features the routes serve."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from setaccounts.fhir.references import RESOURCE_TYPES
from setaccounts_api.deps import SettingsDep
from setaccounts_api.fhir_body import fhir_base
from setaccounts_api.parameters import OPERATION_MODES
from setaccounts_api.responses import FhirResponse, fhir

router = APIRouter(tags=["metadata"])
SOFTWARE = {"name": "fhir-set-accounts", "version": "0.1.0"}
STARTED = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
TYPE_INTERACTIONS = ("read", "vread", "create", "update", "delete", "history-instance", "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system")
SEARCH_PARAMS: tuple[dict[str, str], ...] = (
    {
        "name": "_id",
        "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
        "type": "token",
        "documentation": "Logical id; comma-separated values match any.",
    },
    {
        "name": "_compartment",
        "type": "reference",
        "documentation": "A compartment (Patient/123) or account the resource's meta.compartment lists.",
    },
)
SECURITY: dict[str, Any] = {
    "cors": False,
    "service": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                    "code": "SMART-on-FHIR",
                    "display": "SMART-on-FHIR",
                }
            ],
            "text": "OAuth2 bearer tokens (JWT) with SMART v2 scopes",
        }
    ],
    "description": (
        "Every interaction but this CapabilityStatement needs Authorization: Bearer <JWT>. SMART scopes "
        "(system/ and user/, v2 cruds letters or v1 read/write) decide which interactions on which types a "
        "token may perform; a token that is not an administrator sees and writes only resources in its "
        "accounts' compartments. $set-accounts, $add-accounts and $remove-accounts are reserved to "
        "administrators."
    ),
}
TYPE_PARAM = {"name": "_type", "type": "token", "documentation": "Resource types to search (system search)."}


def operations(base: str) -> list[dict[str, str]]:
    return [{"name": name, "definition": f"{base}/OperationDefinition/{name}"} for name in OPERATION_MODES]


def capability_statement(base: str) -> dict[str, Any]:
    """R4 CapabilityStatement of this server; the operation is advertised at rest level and per type."""
    resource_entry = {
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": False,
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": list(SEARCH_PARAMS),
        "operation": operations(base),
    }
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STARTED,
        "kind": "instance",
        "software": SOFTWARE,
        "implementation": {"description": "FHIR R4 store with an event-driven $set-accounts", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "security": SECURITY,
                "resource": [{"type": t, **resource_entry} for t in sorted(RESOURCE_TYPES)],
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
                "searchParam": [*SEARCH_PARAMS, TYPE_PARAM],
                "operation": operations(base),
            }
        ],
    }


@router.get("/metadata", response_class=FhirResponse)
async def metadata(request: Request, settings: SettingsDep) -> FhirResponse:
    return fhir(capability_statement(fhir_base(request, settings)))
