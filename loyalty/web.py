"""Request-level plumbing shared by the API and the pages: who is calling."""

from __future__ import annotations

from uuid import UUID

from litestar.types import ASGIApp, Receive, Scope, Send

from loyalty.auth import Principal
from loyalty.staff import service as staff_service


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
    return None


async def _principal(scope: Scope) -> Principal | None:
    secret = _bearer(scope)
    if secret is not None:
        principal = await staff_service.principal_for_bearer(secret)
        if principal is None:
            scope["auth_error"] = "the bearer token or API key is invalid, expired or revoked"  # type: ignore[typeddict-unknown-key]
        return principal
    session = scope.get("session")
    if isinstance(session, dict) and session.get("staff_id"):
        try:
            staff_id = UUID(session["staff_id"])
        except ValueError:
            staff_id = None
        principal = await staff_service.principal_for_staff_id(staff_id) if staff_id else None
        if principal is None:
            # Deactivated or deleted since sign-in: end the session on the server too.
            from litestar.types import Empty

            scope["session"] = Empty  # type: ignore[typeddict-item]
        return principal
    return None


def authentication_middleware(app: ASGIApp) -> ASGIApp:
    """Resolve the caller from a bearer token / API key, or from the console session."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["user"] = await _principal(scope)
        await app(scope, receive, send)

    return middleware
