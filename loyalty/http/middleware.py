"""Request-level plumbing shared by the API and the pages: who is calling."""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any, get_args
from uuid import UUID

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.types import ASGIApp, Empty, Receive, Scope, Send

from loyalty.auth import Principal
from loyalty.errors import DomainError, InvalidInput, field_in_message
from loyalty.infrastructure import i18n
from loyalty.infrastructure.schemas import DECIMAL_PATTERN, OUT_OF_RANGE, Input, in_utc_range
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


@cache
def _strict_body_type(annotation: Any) -> bool:
    """Whether a handler's `data` annotation is (or holds) an `Input` request body."""
    if isinstance(annotation, type) and issubclass(annotation, Input):
        return True
    return any(_strict_body_type(arg) for arg in get_args(annotation))


class StrictJsonRequest(Request):
    """Litestar reads a JSON body into plain values and then converts them to the handler's
    type leniently (0 becomes false, "5" becomes 5, a number becomes a datetime). Bodies
    typed with an `Input` Struct are converted to it strictly (JSON types as the schema
    says; only an integral number counts as an integer), so a body that breaks its
    documented schema is refused with 400 naming the field."""

    async def json(self) -> Any:
        field = self.route_handler.parsed_data_field
        if (
            self._json is not Empty
            or self._connection_state.json is not Empty
            or field is None
            or not _strict_body_type(field.annotation)
        ):
            return await super().json()
        try:
            raw = _DECODER.decode(await self.body() or b"null")
        except msgspec.DecodeError:
            return await super().json()  # not JSON at all: Litestar's own answer
        try:
            decoded = msgspec.convert(raw, type=field.annotation, strict=True)
            _check_text(decoded, raw, "$")
        except msgspec.ValidationError as exc:
            if OUT_OF_RANGE in str(exc):  # fits the schema: a rule it cannot express
                raise InvalidInput(OUT_OF_RANGE, field=field_in_message(str(exc))) from exc
            raise ValidationException(
                detail=str(exc), extra=[{"message": str(exc), "key": "data", "source": "body"}]
            ) from exc
        self._json = self._connection_state.json = decoded
        return decoded


def _integral(text: str) -> float | int:
    """JSON Schema counts 5.0 as an integer; msgspec's strict mode would not. (A hook on
    the numbers written with a fraction or exponent: no walk over the decoded body.)"""
    value = float(text)
    if math.isinf(value):  # as msgspec's own decoder: out of range
        raise msgspec.ValidationError("Number out of range")
    return int(value) if value.is_integer() else value


_DECODER = msgspec.json.Decoder(float_hook=_integral)


@cache
def _typed_fields(struct: type) -> tuple[tuple[str, str], ...]:
    """A Struct's fields, less free-form ones (`Any` inside: decoded later, on their own)."""

    def free_form(info: Any) -> bool:
        if isinstance(info, msgspec.inspect.AnyType):
            return True
        if isinstance(info, msgspec.inspect.UnionType):
            return any(free_form(t) for t in info.types)
        if isinstance(info, msgspec.inspect.DictType):
            return free_form(info.key_type) or free_form(info.value_type)
        if isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType)):
            return free_form(info.item_type)
        return False

    fields = msgspec.inspect.type_info(struct).fields  # type: ignore[union-attr]
    return tuple((f.name, f.encode_name) for f in fields if not free_form(f.type))


def _check_text(value: Any, raw: Any, at: str) -> None:
    """Walk the decoded body beside the raw JSON: text must not hold NUL characters (which
    PostgreSQL cannot store) and a decimal sent as a string must match DECIMAL_PATTERN
    (msgspec alone would take " 1_0e5 ")."""
    if isinstance(value, str):
        if "\x00" in value:
            raise msgspec.ValidationError(f"{NUL_REASON} - at `{at}`")
    elif isinstance(value, Decimal):
        if isinstance(raw, str) and not _DECIMAL.fullmatch(raw):
            raise msgspec.ValidationError(f"{DECIMAL_REASON} - at `{at}`")
    elif isinstance(value, msgspec.Struct):
        raw = raw if isinstance(raw, dict) else {}
        for name, key in _typed_fields(type(value)):
            _check_text(getattr(value, name), raw.get(key), f"{at}.{key}")
    elif isinstance(value, dict):
        raw = raw if isinstance(raw, dict) else {}
        for key, item in value.items():
            _check_text(key, None, at)
            _check_text(item, raw.get(key), f"{at}.{key}")
    elif isinstance(value, (list, tuple)):
        raw = raw if isinstance(raw, list) and len(raw) == len(value) else [None] * len(value)
        for i, (item, raw_item) in enumerate(zip(value, raw, strict=True)):
            _check_text(item, raw_item, f"{at}[{i}]")
    elif isinstance(value, (set, frozenset)):
        for item in value:
            _check_text(item, None, at)


_DECIMAL = re.compile(DECIMAL_PATTERN)
DECIMAL_REASON = "Expected a decimal number, like 12.50"
NUL_REASON = "text must not contain NUL (\\u0000) characters"


def nul_middleware(app: ASGIApp) -> ASGIApp:
    """A NUL in the API's path or query is refused with 400 before any handler runs (the
    schema says text never contains one; PostgreSQL could not store it)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith("/api/")
            and ("\x00" in scope["path"] or b"%00" in scope.get("query_string", b""))
        ):
            raise DomainError(NUL_REASON)
        await app(scope, receive, send)

    return middleware


def rfc3339_query(request: Request, *names: str) -> None:
    """Litestar converts date-time query parameters leniently (`to=0.5` becomes a Unix
    time); the schema says RFC 3339, so anything else is refused with 400 naming it."""
    for name in names:
        raw = request.query_params.get(name)
        if raw is None:
            continue
        try:
            value = msgspec.json.decode(msgspec.json.encode(raw), type=datetime)
        except msgspec.ValidationError:
            raise DomainError("must be an RFC 3339 date-time", field=name) from None
        if not in_utc_range(value):
            raise InvalidInput(OUT_OF_RANGE, field=name)


def client_address(request: Request) -> str:
    """The address the request came from, as the server saw it."""
    return request.client.host if request.client else "unknown"
