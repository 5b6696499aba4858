"""Kubernetes `Status` objects and the ApiError that carries one.

Raised by the store, admission and auth; the server turns every ApiError into its Status body and
HTTP code. Helpers build the exact messages a real API server sends (see real-cluster-facts.md).
"""

from __future__ import annotations

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "AlreadyExists",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}


class ApiError(Exception):
    """An API failure with its HTTP code, reason, message and optional details."""

    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason if reason is not None else REASONS.get(code, "")
        self.message = message
        self.details = details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message}
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def success(details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        body["details"] = details
    return body


def not_found(plural: str, name: str, group: str = "") -> ApiError:
    kind = {"group": group, "kind": plural} if group else {"kind": plural}
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(404, f'{qualified} "{name}" not found', details={"name": name, **kind})


def already_exists(plural: str, name: str, group: str = "") -> ApiError:
    kind = {"group": group, "kind": plural} if group else {"kind": plural}
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(409, f'{qualified} "{name}" already exists', details={"name": name, **kind})


def conflict(plural: str, name: str, group: str = "") -> ApiError:
    kind = {"group": group, "kind": plural} if group else {"kind": plural}
    qualified = f"{plural}.{group}" if group else plural
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        reason="Conflict",
        details={"name": name, **kind},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def invalid(kind: str, name: str, causes: list[dict], group: str = "") -> ApiError:
    """422 with the real message: one cause inline, several in brackets."""
    parts = [f"{c['field']}: {c['message']}" for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified = f"{kind}.{group}" if group else kind
    details = {"name": name, **({"group": group} if group else {}), "kind": kind, "causes": causes}
    return ApiError(422, f'{qualified} "{name}" is invalid: {joined}', details=details)
