"""Domain errors and the one place that turns every failure into RFC 9457 problem details."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("loyalty.errors")


class DomainError(Exception):
    """A rule was broken; carries its HTTP status and, for input problems, the field."""

    status_code = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(
        self, detail: str, *, field: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra or {}
        self.headers: dict[str, str] = {}


class InvalidInput(DomainError):
    status_code = 422
    title = "Invalid input"
    slug = "invalid-input"


class NotFound(DomainError):
    status_code = 404
    title = "Not found"
    slug = "not-found"


class Conflict(DomainError):
    status_code = 409
    title = "Conflict"
    slug = "conflict"


class NotAuthenticated(DomainError):
    status_code = 401
    title = "Not authenticated"
    slug = "not-authenticated"


class PermissionDenied(DomainError):
    status_code = 403
    title = "Permission denied"
    slug = "permission-denied"


class RateLimited(DomainError):
    status_code = 429
    title = "Too many requests"
    slug = "rate-limited"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, extra={"retry_after": retry_after})
        self.headers = {"Retry-After": str(retry_after)}


class ServiceUnavailable(DomainError):
    status_code = 503
    title = "Service unavailable"
    slug = "service-unavailable"


def problem(
    request: Request,
    *,
    status: int,
    title: str,
    slug: str,
    detail: str,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    body: dict[str, Any] = {
        "type": f"urn:loyalty:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    request_id = request.scope.get("request_id")
    if request_id:
        body["request_id"] = request_id
    body.update(extra or {})
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _domain_error_handler(request: Request, exc: DomainError) -> Response[bytes]:
    extra = dict(exc.extra)
    if exc.field:
        extra["field"] = exc.field
        extra.setdefault("errors", [{"field": exc.field, "reason": exc.detail}])
    return problem(
        request,
        status=exc.status_code,
        title=exc.title,
        slug=exc.slug,
        detail=exc.detail,
        extra=extra,
        headers=exc.headers,
    )


def field_in_message(message: str) -> str | None:
    """msgspec names the culprit in its message: "unknown field `x`", "missing required field
    `x`", "... - at `$.lines[0].sku`"."""
    paths = [part.split("`", 1)[0] for part in message.split("`$.")[1:]]
    if len(paths) > 1:  # raised inside a nested struct: "... at `$.amount` - at `$.lines[0]`"
        return ".".join(reversed(paths))
    for marker in ("unknown field `", "missing required field `", "`$."):
        if marker in message:
            return message.split(marker, 1)[1].split("`", 1)[0]
    return None


def _field_of(item: dict[str, Any]) -> str | None:
    key = item.get("key")  # Litestar's key is only the parameter name ("data") for bodies
    return field_in_message(str(item.get("message", ""))) or (
        str(key) if key and key != "data" else None
    )


def _validation_handler(request: Request, exc: ValidationException) -> Response[bytes]:
    items = exc.extra if isinstance(exc.extra, list) else []
    errors = []
    for item in items:
        if isinstance(item, dict):
            errors.append(
                {
                    "field": _field_of(item),
                    "source": item.get("source", "body"),
                    "reason": str(item.get("message", "invalid value")),
                }
            )
    if not errors:
        reason = str(exc.detail or "the request could not be read")
        if "JSON" in reason or "malformed" in reason.lower():
            reason = "the body is not valid JSON"
        errors.append({"field": None, "source": "body", "reason": reason})
    first = errors[0]
    detail = f"{first['field']}: {first['reason']}" if first["field"] else f"{first['reason']}"
    return problem(
        request,
        status=400,
        title="Validation failed",
        slug="validation",
        detail=detail,
        extra={"field": first["field"], "errors": errors},
    )


_HTTP_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    413: "Request too large",
    415: "Unsupported media type",
    429: "Too many requests",
}


def _http_error_handler(request: Request, exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status >= 500 and exc.detail == "client disconnected prematurely":
        # Litestar's words for a body cut short (a client gone, or one too slow for the
        # server's limits): nobody is left to answer, and it is not our error.
        log.info("client disconnected before sending its whole body")
        return problem(
            request,
            status=400,
            title="Bad request",
            slug="bad-request",
            detail="the body ended early",
        )
    if status >= 500:
        return _unexpected_handler(request, exc)
    if isinstance(exc.__cause__, SerializationException):
        reason = f"the body is not valid JSON ({exc.detail})"
        return problem(
            request,
            status=400,
            title="Validation failed",
            slug="validation",
            detail=f"body: {reason}",
            extra={
                "field": "body",
                "errors": [{"field": "body", "source": "body", "reason": reason}],
            },
        )
    title = _HTTP_TITLES.get(status, "Request failed")
    detail = exc.detail if exc.detail and exc.detail != title else title
    if status == 404 and detail == "Not Found":
        detail = f"nothing at {request.url.path}"
    return problem(
        request,
        status=status,
        title=title,
        slug=title.lower().replace(" ", "-"),
        detail=str(detail),
        headers=exc.headers,
    )


def _unavailable_handler(request: Request, exc: Exception) -> Response[bytes]:
    log.warning("dependency unavailable: %s", type(exc).__name__)
    return problem(
        request,
        status=503,
        title="Service unavailable",
        slug="service-unavailable",
        detail="a backing service is unavailable; try again shortly",
        headers={"Retry-After": "5"},
    )


def _contention_handler(request: Request, exc: Exception) -> Response[bytes]:
    log.warning("transaction aborted by contention: %s", type(exc).__name__)
    return problem(
        request,
        status=503,
        title="Busy",
        slug="contention",
        detail="the request collided with a concurrent change and was not applied; retry it",
        headers={"Retry-After": "1"},
    )


def _unstorable_text_handler(request: Request, exc: Exception) -> Response[bytes]:
    """PostgreSQL text cannot hold NUL characters: bad input, not a server error."""
    reason = "text must not contain NUL (\\u0000) characters"
    return problem(
        request,
        status=400,
        title="Validation failed",
        slug="validation",
        detail=reason,
        extra={"field": None, "errors": [{"field": None, "source": "body", "reason": reason}]},
    )


def _unexpected_handler(request: Request, exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", extra={"request_id": request.scope.get("request_id")})
    return problem(
        request,
        status=500,
        title="Internal error",
        slug="internal",
        detail="something went wrong on our side; the request id identifies it in our logs",
    )


exception_handlers: dict[type[Exception], Any] = {
    DomainError: _domain_error_handler,
    ValidationException: _validation_handler,
    HTTPException: _http_error_handler,
    asyncpg.exceptions.DeadlockDetectedError: _contention_handler,
    asyncpg.exceptions.SerializationError: _contention_handler,
    asyncpg.exceptions.LockNotAvailableError: _contention_handler,
    asyncpg.exceptions.CharacterNotInRepertoireError: _unstorable_text_handler,
    asyncpg.exceptions.UntranslatableCharacterError: _unstorable_text_handler,
    asyncpg.exceptions.CannotConnectNowError: _unavailable_handler,
    asyncpg.exceptions.ConnectionDoesNotExistError: _unavailable_handler,
    asyncpg.exceptions.TooManyConnectionsError: _unavailable_handler,
    asyncpg.exceptions.AdminShutdownError: _unavailable_handler,
    asyncpg.exceptions.InterfaceError: _unavailable_handler,
    # A pooled connection that a database crash broke mid-operation ("cannot switch to
    # state ...; another operation is in progress").
    asyncpg.exceptions.InternalClientError: _unavailable_handler,
    ConnectionError: _unavailable_handler,
    OSError: _unavailable_handler,
    TimeoutError: _unavailable_handler,
    RedisConnectionError: _unavailable_handler,
    RedisTimeoutError: _unavailable_handler,
    Exception: _unexpected_handler,
}
