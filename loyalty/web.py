"""Request-level plumbing shared by the API and the pages: who is calling."""

from __future__ import annotations

from uuid import UUID

from litestar.types import ASGIApp, Empty, Receive, Scope, Send

from loyalty.auth import Principal
from loyalty.portal import i18n
from loyalty.portal import service as portal_service
from loyalty.staff import service as staff_service


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
    return None


async def _principal(scope: Scope) -> Principal | None:
    secret = bearer_token(scope)
    if secret is not None:
        if secret.startswith(portal_service.TOKEN_PREFIX):
            principal = await portal_service.principal_for_token(secret, scope["app"].state.redis)
        else:
            principal = await staff_service.principal_for_bearer(secret)
        if principal is None:
            scope["auth_error"] = "the bearer token or API key is invalid, expired or revoked"  # type: ignore[typeddict-unknown-key]
        return principal
    session = scope.get("session")
    if isinstance(session, dict) and session.get("member_id"):
        try:
            principal = await portal_service.principal_for_member(UUID(session["member_id"]))
        except ValueError:
            principal = None
        if principal is None:
            scope["session"] = Empty  # type: ignore[typeddict-item]
        return principal
    if isinstance(session, dict) and session.get("staff_id"):
        try:
            staff_id = UUID(session["staff_id"])
        except ValueError:
            staff_id = None
        principal = await staff_service.principal_for_staff_id(staff_id) if staff_id else None
        if principal is None:
            # Deactivated or deleted since sign-in: end the session on the server too.
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


LANGUAGE_COOKIE = "loyalty_lang"
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; style-src-attr"
        b" 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; form-action 'self';"
        b" base-uri 'self'; object-src 'none'",
    ),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
]


def _cookie(scope: Scope, name: str) -> str | None:
    for header, value in scope["headers"]:
        if header == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, content = part.strip().partition("=")
                if key == name:
                    return content
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for header, value in scope["headers"]:
        if header == name:
            return value.decode("latin-1")
    return None


def page_middleware(app: ASGIApp) -> ASGIApp:
    """Security headers on every response; on portal and console pages, the reader's language
    (asked for with ?lang=, remembered in a cookie for that part of the site, else from
    Accept-Language)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        asked = None
        section = next((p for p in ("/portal", "/console") if scope["path"].startswith(p)), None)
        if section:
            query = dict(
                part.partition("=")[::2]
                for part in scope.get("query_string", b"").decode("latin-1").split("&")
            )
            asked = query.get("lang") if query.get("lang") in i18n.LANGUAGES else None
            language = i18n.choose(
                asked, _cookie(scope, LANGUAGE_COOKIE), _header(scope, b"accept-language")
            )
        else:
            language = i18n.DEFAULT
        token = i18n.current.set(language)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                if asked:
                    headers.append(
                        (
                            b"set-cookie",
                            f"{LANGUAGE_COOKIE}={asked}; Path={section}; Max-Age=31536000;"
                            f" SameSite=Lax".encode(),
                        )
                    )
                message = {**message, "headers": headers}
            await send(message)

        try:
            await app(scope, receive, send_with_headers)
        finally:
            i18n.current.reset(token)

    return middleware
