"""OperationOutcome bodies and the one exception type that carries an HTTP status with them."""

from __future__ import annotations

from typing import Any, Literal

Severity = Literal["fatal", "error", "warning", "information"]


def operation_outcome(
    code: str, diagnostics: str, severity: Severity = "error", expression: list[str] | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class FhirError(Exception):
    """A request the server refuses; rendered as an OperationOutcome with `status`.

    `retriable` tells a caller (or a consumer loop) whether trying again later can succeed; `headers` go
    on the HTTP response (`WWW-Authenticate`, `Retry-After`).
    """

    def __init__(
        self,
        status: int,
        code: str,
        diagnostics: str,
        *,
        expression: list[str] | None = None,
        retriable: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.headers = headers
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.expression = expression
        self.retriable = retriable

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.code, self.diagnostics, expression=self.expression)


def not_found(what: str) -> FhirError:
    return FhirError(404, "not-found", f"{what} not found")


def invalid(diagnostics: str, expression: list[str] | None = None) -> FhirError:
    return FhirError(400, "invalid", diagnostics, expression=expression)
