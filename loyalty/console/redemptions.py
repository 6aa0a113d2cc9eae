"""Redemptions in the console: the list of open ones to work through (fulfil or cancel, by
reward and status), a member's redemptions, and redeeming a reward for a member. The
services check who may see the member: one out of reach is a 404 page."""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from loyalty.console.common import back, chosen_id, convert, form, form_page, staff
from loyalty.errors import Conflict, DomainError
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.members import service as members
from loyalty.rewards import catalog, eligibility, redemptions
from loyalty.rewards import schemas as reward_schemas

SAVED = {
    "fulfilled": N_("The redemption is marked fulfilled."),
    "cancelled": N_("The redemption is cancelled; the points are back."),
    "redeemed": N_("The reward is redeemed for the member."),
}

_DETAILS = (
    N_("no such redemption"),
    N_("this redemption is already cancelled"),
    N_("a different redemption was already made with this idempotency_key"),
    N_("this member was merged; redeem for the survivor"),
    N_("no such reward"),
)

QUEUE_LIMIT = 200  # a work list, not an archive: the oldest first, filters narrow it

# Why a member may not redeem a reward, as staff read it (the reason codes of
# `rewards.eligibility`).
REFUSALS = {
    "inactive": N_("not on offer at the moment"),
    "not_started": N_("not on offer yet"),
    "ended": N_("no longer on offer"),
    "tier_too_low": N_("for higher tiers"),
    "limit_reached": N_("the member's limit for this reward is reached"),
    "out_of_stock": N_("out of stock"),
    "points_in_debt": N_("points owed from a return must be repaid first"),
    "not_enough_points": N_("the member has too few available points"),
}
_REASON = re.compile(r"\((\w+)\)$")


def _refusal(exc: DomainError) -> DomainError:
    """A refused redemption's reason in words the page translates (the service's sentence
    carries figures the catalog cannot hold)."""
    found = _REASON.search(exc.detail)
    if found and found.group(1) in REFUSALS:
        exc.detail = REFUSALS[found.group(1)]
    return exc


# Back to the list the button was pressed on (same filters), or to the member's page.
_RETURN_TO = ("/console/redemptions", "/console/members/")


def _return_url(values: dict[str, Any], default: str) -> str:
    url = str(values.get("next", ""))
    ok = url.startswith(_RETURN_TO) and "//" not in url and "\\" not in url
    return url if ok else default


def _with_saved(url: str, saved: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}saved={saved}"


class RedemptionPages(Controller):
    path = "/"

    @get("/redemptions")
    async def queue(
        self,
        request: Request,
        status: Annotated[str, QueryParameter(max_length=16)] = "requested",
        reward: Annotated[str, QueryParameter(max_length=40)] = "",
    ) -> Template:
        """Open redemptions first asked, first listed; filter by reward and status."""
        principal = staff(request, "redemptions:fulfil")
        status = status if status in (*redemptions.STATUSES, "all") else "requested"
        try:
            reward_id = UUID(reward) if reward else None
        except ValueError:
            reward_id = None
        found = await redemptions.list_redemptions(
            principal,
            status=None if status == "all" else status,
            reward_id=reward_id,
            limit=QUEUE_LIMIT,
        )
        query = request.url.query
        return form_page(
            request,
            "redemptions_queue.html",
            SAVED,
            rows=found,
            more=len(found) == QUEUE_LIMIT,
            shown_status=status,
            statuses=redemptions.STATUSES,
            reward=reward_id,
            rewards=await catalog.list_rewards(include_inactive=True),
            here="/console/redemptions" + (f"?{query}" if query else ""),
            number=members.format_number,
        )

    @post(
        "/redemptions/{redemption_id:uuid}/fulfil",
        opt=covers("POST /api/v1/redemptions/{redemption_id:uuid}/fulfil"),
    )
    async def fulfil(self, request: Request, redemption_id: FromPath[UUID]) -> Redirect:
        principal = staff(request, "redemptions:fulfil")
        values = await form(request)
        try:
            await redemptions.fulfil(redemption_id, principal)
        except Conflict:
            # Sent twice: the first submit fulfilled it, which is what was asked.
            found = await redemptions.get_redemption(redemption_id, principal)
            if found.status != "fulfilled":
                raise
        return back(_with_saved(_return_url(values, "/console/redemptions"), "fulfilled"))

    @post(
        "/redemptions/{redemption_id:uuid}/cancel",
        opt=covers("POST /api/v1/redemptions/{redemption_id:uuid}/cancel"),
    )
    async def cancel(self, request: Request, redemption_id: FromPath[UUID]) -> Template | Redirect:
        """With a reason (required); the points come back to the member."""
        principal = staff(request, "redemptions:write")
        values = await form(request)
        target = _return_url(values, "/console/redemptions")
        try:
            data = convert(
                {"reason": str(values.get("reason", "")).strip()}, reward_schemas.CancellationCreate
            )
            await redemptions.cancel(redemption_id, data, principal)
        except Conflict:
            found = await redemptions.get_redemption(redemption_id, principal)
            if found.status != "cancelled":
                raise
        except DomainError as exc:
            found = await redemptions.get_redemption(redemption_id, principal)
            return await member_redemptions_page(
                request, found.member_id, exc, values, cancelling=redemption_id
            )
        return back(_with_saved(target, "cancelled"))

    @get(
        "/members/{member_id:uuid}/redemptions",
        opt=covers(
            "GET /api/v1/members/{member_id:uuid}/redemptions",
            "GET /api/v1/members/{member_id:uuid}/rewards",
        ),
    )
    async def member_redemptions(self, request: Request, member_id: FromPath[UUID]) -> Template:
        return await member_redemptions_page(request, member_id)

    @post(
        "/members/{member_id:uuid}/redemptions",
        opt=covers("POST /api/v1/members/{member_id:uuid}/redemptions"),
    )
    async def redeem(self, request: Request, member_id: FromPath[UUID]) -> Template | Redirect:
        """Redeem for the member (at the counter, on the phone). The hidden key makes a
        second submit of the same form find the first redemption, not make another."""
        principal = staff(request, "redemptions:write")
        values = await form(request)
        try:
            data = convert(
                {
                    "reward_id": chosen_id(values.get("reward_id"), "reward_id"),
                    "quantity": str(values.get("quantity", "1")).strip() or "1",
                    "idempotency_key": f"console:{str(values.get('key', ''))[:100]}",
                },
                reward_schemas.RedemptionCreate,
            )
            redemption, _created = await redemptions.redeem(member_id, data, principal)
        except DomainError as exc:
            return await member_redemptions_page(request, member_id, _refusal(exc), values)
        return back(f"/console/members/{member_id}/redemptions?saved=redeemed#r-{redemption.id}")


async def member_redemptions_page(
    request: Request,
    member_id: UUID,
    error: DomainError | None = None,
    values: dict[str, Any] | None = None,
    cancelling: UUID | None = None,
) -> Template:
    """A member's redemptions, newest first, with the rewards they may redeem now."""
    principal = staff(request, "members:read")
    member = await members.get_member(member_id, principal)  # 404 if out of reach
    made = await redemptions.member_redemptions(member_id, principal)
    offer = (
        await eligibility.member_catalog(member_id, principal)
        if principal.can("redemptions:write")
        else None
    )
    values = values or {}
    return form_page(
        request,
        "redemptions_member.html",
        SAVED,
        error,
        m=member,
        made=made,
        offer=offer,
        form=values,
        # A failed redeem keeps its key, so the corrected form still redeems once.
        key=values.get("key") or secrets.token_urlsafe(12),
        cancelling=cancelling,
        refusals=REFUSALS,
        here=f"/console/members/{member_id}/redemptions",
        number=members.format_number,
    )
