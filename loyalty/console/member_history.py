"""A member's history in the console: every change to the archive (who, when, old and new
values, merges included) and the member's referrals, with the form that records who
referred a member who joined without the code. Same services as the API; a member out of
the viewer's reach is a 404 page."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from loyalty.console.common import back, convert, form, form_page, staff
from loyalty.errors import DomainError
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.members import service as members
from loyalty.referrals import schemas as referral_schemas
from loyalty.referrals import service as referrals

SAVED = {"referrer": N_("The referrer is recorded.")}

# What the referral service may answer, shown under the code field in the page's language.
_DETAILS = (
    N_("this member was already referred"),
    N_("no member has this referral code"),
    N_("a member cannot refer themselves"),
)


class MemberHistoryPages(Controller):
    path = "/members/{member_id:uuid}"

    @get(
        "/history",
        opt=covers(
            "GET /api/v1/members/{member_id:uuid}/changes",
            "GET /api/v1/members/{member_id:uuid}/referrals",
        ),
    )
    async def history(self, request: Request, member_id: FromPath[UUID]) -> Template:
        return await history_page(request, member_id)

    @post("/referrer", opt=covers("PUT /api/v1/members/{member_id:uuid}/referrer"))
    async def set_referrer(
        self, request: Request, member_id: FromPath[UUID]
    ) -> Template | Redirect:
        principal = staff(request, "members:write")
        values = await form(request)
        try:
            data = convert(
                {"referral_code": str(values.get("referral_code", "")).strip()},
                referral_schemas.ReferrerUpdate,
            )
            await referrals.set_referrer(member_id, data, principal)
        except DomainError as exc:
            return await history_page(request, member_id, exc, values)
        return back(f"/console/members/{member_id}/history?saved=referrer")


async def history_page(
    request: Request,
    member_id: UUID,
    error: DomainError | None = None,
    values: dict | None = None,
) -> Template:
    principal = staff(request, "members:read")
    member = await members.get_member(member_id, principal)  # 404 if out of reach
    return form_page(
        request,
        "member_history.html",
        SAVED,
        error,
        m=member,
        changes=await members.history(member_id, principal),
        referrals=await referrals.member_referrals(member_id, principal),
        form=values or {},
        number=members.format_number,
    )
