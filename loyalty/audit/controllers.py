"""The audit trail's API (`GET /api/v1/audit`, `GET /api/v1/audit.csv`) and the middleware
that records who acts and every staff write no service recorded in detail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import QueryParameter
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from loyalty.audit import schemas, service
from loyalty.auth import Principal, requires
from loyalty.http.middleware import rfc3339_query
from loyalty.http.openapi import problems
from loyalty.http.params import PageLimit, PageOffset
from loyalty.http.responses import CSV, csv_download
from loyalty.http.routes import INTEGRATION_ONLY, describe
from loyalty.infrastructure import actor

FilterText = Annotated[str | None, QueryParameter(max_length=200)]
From = Annotated[datetime | None, QueryParameter(name="from")]
To = Annotated[datetime | None, QueryParameter()]


def audit_filter(
    actor: str | None, action: str | None, subject: str | None, from_: datetime | None, to
) -> schemas.AuditFilter:
    return schemas.AuditFilter(
        actor=actor or None, action=action or None, subject=subject or None, from_=from_, to=to
    )


class AuditController(Controller):
    path = "/api/v1"
    tags = ["audit"]
    guards = [requires("audit:trail")]

    @get("/audit", summary="The audit trail", responses=problems(422))
    async def trail(
        self,
        request: Request,
        actor: FilterText = None,
        action: FilterText = None,
        subject: FilterText = None,
        from_: From = None,
        to: To = None,
        limit: PageLimit = 50,
        offset: PageOffset = 0,
    ) -> list[schemas.AuditEntry]:
        """Every staff change, newest first: who (`actor`: part of the label, e.g. `alice`),
        what (`action`: an action or its start, e.g. `tiers`), on what (`subject`: an id or
        a subject type), when (`from` inclusive, `to` exclusive). Configuration changes
        carry the state before and after."""
        rfc3339_query(request, "from", "to")
        return await service.entries(audit_filter(actor, action, subject, from_, to), limit, offset)

    @get("/audit.csv", summary="The audit trail as CSV", media_type=CSV, responses=problems(422))
    async def trail_csv(
        self,
        request: Request,
        actor: FilterText = None,
        action: FilterText = None,
        subject: FilterText = None,
        from_: From = None,
        to: To = None,
    ) -> Response[str]:
        """The same records and filters as `GET /api/v1/audit`, all of them, as CSV."""
        rfc3339_query(request, "from", "to")
        text = await service.entries_csv(audit_filter(actor, action, subject, from_, to))
        return csv_download(text, "audit.csv")


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Not changes to anything shared: signing in and out (sessions and tokens keep their own
# record) and marking one's own notices read.
NOT_CHANGES = (
    "/api/v1/auth/",
    "/console/login",
    "/console/logout",
    "/api/v1/notices",
    "/console/notices",
)
# Reads sent as POST (a body too rich for a query string).
READS = frozenset({"POST /api/v1/segments/count", "POST /api/v1/tiers/simulate"})


_GENERIC: dict[int, bool] = {}


def _gets_generic_record(handler: Any) -> bool:
    """Whether a successful write through `handler` gets a generic record: not for operations
    marked integration-only, nor for sales (posting purchases and returns: each is a record
    of its own, with its sender's id, and the till's hot path)."""
    if handler is None:
        return True
    known = _GENERIC.get(id(handler))
    if known is None:
        _, permissions = describe(handler)
        known = INTEGRATION_ONLY not in (handler.opt or {}) and "purchases:write" not in (
            permissions
        )
        _GENERIC[id(handler)] = known
    return known


def audit_middleware(app: ASGIApp) -> ASGIApp:
    """After the caller is known: act as them for the request (`loyalty.infrastructure.actor`),
    and after a successful write by staff or an API key that no service recorded, add a
    generic record naming the operation and the ids in its path (see `_gets_generic_record`
    for what is left out)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get("user")
        if scope["type"] != "http" or not isinstance(principal, Principal):
            await app(scope, receive, send)
            return
        acting, token = actor.begin(actor.actor_of(principal), scope.get("request_id"))
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_status)
            if (
                status < 400
                and not acting.recorded
                and scope["method"] in WRITES
                and principal.kind in ("staff", "api_key")
                and not scope["path"].startswith(NOT_CHANGES)
            ):
                operation = f"{scope['method']} {scope.get('path_template') or scope['path']}"
                if operation not in READS and _gets_generic_record(scope.get("route_handler")):
                    subject_type, subject_id = service.subject_of(scope.get("path_params") or {})
                    await service.record(
                        operation,
                        subject_type,
                        subject_id,
                        summary=scope["path"],
                    )
        finally:
            actor.end(token)

    return middleware
