"""FHIR JSON responses (`application/fhir+json`) and the handlers that turn errors into OperationOutcomes."""

from __future__ import annotations

import traceback
import uuid
from pathlib import Path
from typing import Any

import structlog
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

from setaccounts.failures import is_outage
from setaccounts.fhir.outcomes import FhirError, operation_outcome

FHIR_JSON = "application/fhir+json"
log = structlog.get_logger(__name__)


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON


def outcome_response(
    status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None
) -> FhirResponse:
    return FhirResponse(operation_outcome(code, diagnostics), status_code=status, headers=headers)


async def _fhir_error(_: Request, exc: Exception) -> FhirResponse:
    assert isinstance(exc, FhirError)
    return FhirResponse(exc.outcome(), status_code=exc.status, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> FhirResponse:
    assert isinstance(exc, RequestValidationError)
    details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return outcome_response(400, "invalid", details or "invalid request")


_HTTP_CODES: dict[int, str] = {
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    415: "not-supported",
}


async def _http_error(_: Request, exc: Exception) -> FhirResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "processing")
    return outcome_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))


OUTAGE_RETRY_AFTER_SECONDS = 5


async def _dependency_error(request: Request, exc: Exception) -> FhirResponse:
    """Driver errors: an outage is a 503 the client may retry; anything else is a plain 500."""
    if is_outage(exc):  # the store or the broker does not answer: say so, without driver details
        log.warning("dependency down", path=request.url.path, error=type(exc).__name__)
        return outcome_response(
            503,
            "transient",
            "a backing service is unavailable; retry later",
            headers={"Retry-After": str(OUTAGE_RETRY_AFTER_SECONDS)},
        )
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> FhirResponse:
    """A 500 that names nothing internal, logged in one line under the same incident id: the error's type
    and where it was raised. Never its message or the frames' locals, which may hold the request body (a
    driver error quotes the whole document it refused)."""
    incident = uuid.uuid4().hex[:12]
    log.error(
        "unhandled error",
        path=request.url.path,
        error=type(exc).__name__,
        at=raised_at(exc),
        incident=incident,
    )
    return outcome_response(500, "exception", f"internal error (incident {incident})")


def raised_at(exc: BaseException, frames: int = 6) -> str:
    """The innermost `frames` of the traceback as `file.py:line in function` joined by ` < `."""
    stack = traceback.extract_tb(exc.__traceback__)[-frames:]
    return " < ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(stack))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for driver_error in (PyMongoError, KafkaError, TimeoutError, ConnectionError):
        app.add_exception_handler(driver_error, _dependency_error)
    app.add_exception_handler(Exception, _unexpected)


def fhir(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> FhirResponse:
    return FhirResponse(body, status_code=status, headers=headers)
