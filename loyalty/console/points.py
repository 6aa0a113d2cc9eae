"""A member's points in the console: the balance, the statement (every ledger entry, newest
first, by kind, a page at a time) and manual adjustments with a mandatory reason
(points:adjust). A member out of the viewer's reach is a 404 page, as in the API."""

from __future__ import annotations

import secrets
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from loyalty.console.common import back, convert, form, form_page, staff
from loyalty.errors import DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.members import service as members
from loyalty.points import schemas as point_schemas
from loyalty.points import service as points

SAVED = {"adjusted": N_("The adjustment is recorded.")}

KINDS = point_schemas.Kind.__args__  # type: ignore[attr-defined]

_DETAILS = (
    N_("must not be zero"),
    N_("a different adjustment was already made with this idempotency_key"),
    N_("this member was merged; adjust the survivor"),
    N_("only managers and above can adjust points"),
    N_("is not a cursor this API gave out"),
)


class PointsPages(Controller):
    path = "/members/{member_id:uuid}/points"

    @get(
        "/",
        opt=covers(
            "GET /api/v1/members/{member_id:uuid}/points",
            "GET /api/v1/members/{member_id:uuid}/points/entries",
        ),
    )
    async def statement(
        self,
        request: Request,
        member_id: FromPath[UUID],
        kind: Annotated[str, QueryParameter(max_length=24)] = "",
        cursor: Annotated[str, QueryParameter(max_length=200)] = "",
    ) -> Template:
        return await points_page(request, member_id, kind=kind, cursor=cursor)

    @post(
        "/adjustments",
        opt=covers("POST /api/v1/members/{member_id:uuid}/points/adjustments"),
    )
    async def adjust(self, request: Request, member_id: FromPath[UUID]) -> Template | Redirect:
        """Add (positive) or deduct (negative) points with a reason. The hidden key makes a
        second submit of the same form find the first adjustment instead of adjusting again."""
        principal = staff(request, "points:adjust")
        values = await form(request)
        try:
            amount = str(values.get("points", "")).strip().replace("+", "", 1)
            if not amount:
                raise InvalidInput(N_("is required"), field="points")
            data = convert(
                {
                    "points": amount,
                    "reason": str(values.get("reason", "")).strip(),
                    "idempotency_key": f"console:{str(values.get('key', ''))[:80]}",
                },
                point_schemas.AdjustmentCreate,
            )
            await points.adjust(member_id, data, principal)
        except DomainError as exc:
            return await points_page(request, member_id, error=exc, values=values)
        return back(f"/console/members/{member_id}/points?saved=adjusted")


async def points_page(
    request: Request,
    member_id: UUID,
    *,
    kind: str = "",
    cursor: str = "",
    error: DomainError | None = None,
    values: dict[str, Any] | None = None,
) -> Template:
    principal = staff(request, "members:read")
    member = await members.get_member(member_id, principal)  # 404 if out of reach
    balance = await points.balance(member_id, principal)
    kind = kind if kind in KINDS else ""
    try:
        entries = await points.statement(
            member_id, principal, kind=kind or None, cursor=cursor or None, limit=50
        )
    except InvalidInput:  # a cursor from elsewhere: the first page
        entries = await points.statement(member_id, principal, kind=kind or None, limit=50)
    values = values or {}
    return form_page(
        request,
        "points_member.html",
        SAVED,
        error,
        m=member,
        balance=balance,
        entries=entries,
        kinds=KINDS,
        kind=kind,
        form=values,
        # A failed adjustment keeps its key, so the corrected form still adjusts once.
        key=values.get("key") or secrets.token_urlsafe(12),
        number=members.format_number,
    )
