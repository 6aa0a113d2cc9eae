"""The member's own pages: home, points history, rewards and redemptions, referrals and
messages. Each calls the same domain services as the API, with the member as principal."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, get_args
from uuid import UUID

import segno
from litestar import Controller, Request, get, post
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from loyalty.auth import Principal
from loyalty.errors import DomainError
from loyalty.events import service as events
from loyalty.infrastructure import i18n
from loyalty.members import service as members
from loyalty.points import schemas as point_schemas
from loyalty.points import service as points
from loyalty.portal.pages import member, page, problem
from loyalty.referrals import service as referrals
from loyalty.rewards import eligibility, redemptions
from loyalty.rewards import schemas as reward_schemas
from loyalty.tiers import service as tiers

ENTRY_KINDS = get_args(point_schemas.Kind)  # the points history filter offers every kind


@dataclass
class RedeemForm:
    quantity: str = "1"
    key: str = ""


async def _rewards_page(
    request: Request, principal: Principal, exc: DomainError | None = None
) -> Template:
    """The catalog and the member's redemptions, with the problem when an action failed."""
    catalog = await eligibility.member_catalog(principal.id, principal)
    mine = await redemptions.member_redemptions(principal.id, principal)
    if exc is None:
        return page("rewards", request, catalog=catalog, redemptions=mine)
    return page(
        "rewards",
        request,
        exc.status_code,
        error=problem(exc),
        catalog=catalog,
        redemptions=mine,
    )


class MemberPages(Controller):
    path = "/"

    @get("/")
    async def home(self, request: Request) -> Template:
        principal = member(request)
        archive = await members.get_member(principal.id, principal)
        balance = await points.balance(principal.id, principal)
        tier = await tiers.status(principal.id, principal)
        inbox = await events.inbox(principal.id, i18n.current.get(), limit=3)
        return page("home", request, member=archive, balance=balance, tier=tier, inbox=inbox)

    @get("/points")
    async def history(
        self,
        request: Request,
        kind: Annotated[str, QueryParameter(max_length=32)] = "",
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> Template:
        principal = member(request)
        kind = kind if kind in ENTRY_KINDS else ""
        try:
            entries = await points.statement(
                principal.id, principal, kind=kind or None, cursor=cursor, limit=20
            )
        except DomainError as exc:
            return page(
                "points",
                request,
                exc.status_code,
                error=problem(exc),
                kinds=ENTRY_KINDS,
                kind=kind,
                entries=None,
            )
        return page("points", request, entries=entries, kinds=ENTRY_KINDS, kind=kind)

    @get("/rewards")
    async def catalog(self, request: Request) -> Template:
        return await _rewards_page(request, member(request))

    @get("/rewards/{reward_id:uuid}")
    async def confirm_redeem(self, request: Request, reward_id: FromPath[UUID]) -> Template:
        principal = member(request)
        catalog = await eligibility.member_catalog(principal.id, principal)
        item = next((i for i in catalog.items if i.reward.id == reward_id), None)
        if item is None:
            return page(
                "rewards",
                request,
                404,
                error=i18n.gettext("This reward is not on offer."),
                catalog=catalog,
                redemptions=[],
            )
        return page("redeem", request, item=item, catalog=catalog, key=secrets.token_urlsafe(12))

    @post("/rewards/{reward_id:uuid}")
    async def redeem(
        self, request: Request, reward_id: FromPath[UUID], data: URLEncodedBody[RedeemForm]
    ) -> Template:
        principal = member(request)
        try:
            if not data.quantity.strip().isdecimal():
                # Not a number at all: the form broke its shape (400), as a JSON body would.
                raise DomainError(i18n.gettext("Enter a whole number."), field="quantity")
            redemption, _ = await redemptions.redeem(
                principal.id,
                reward_schemas.RedemptionCreate(
                    reward_id=reward_id,
                    quantity=max(1, min(int(data.quantity), 100)),
                    idempotency_key=f"portal:{data.key[:100]}",
                ),
                principal,
            )
        except DomainError as exc:
            return await _rewards_page(request, principal, exc)
        return page("redeemed", request, redemption=redemption)

    @get("/redemptions/{redemption_id:uuid}")
    async def redemption(self, request: Request, redemption_id: FromPath[UUID]) -> Template:
        principal = member(request)
        try:
            redemption = await redemptions.get_redemption(redemption_id, principal)
        except DomainError as exc:
            return page(
                "redeemed",
                request,
                exc.status_code,
                error=i18n.gettext("Not found."),
                redemption=None,
            )
        return page("redeemed", request, redemption=redemption)

    @post("/redemptions/{redemption_id:uuid}/cancel")
    async def cancel_redemption(
        self, request: Request, redemption_id: FromPath[UUID]
    ) -> Redirect | Template:
        principal = member(request)
        try:
            await redemptions.cancel(
                redemption_id,
                reward_schemas.CancellationCreate(reason="cancelled by the member"),
                principal,
            )
        except DomainError as exc:
            return await _rewards_page(request, principal, exc)
        return Redirect("/portal/rewards", status_code=303)

    @get("/referrals")
    async def referrals_page(self, request: Request) -> Template:
        principal = member(request)
        mine = await referrals.member_referrals(principal.id, principal)
        qr = segno.make(mine.link, error="m").svg_inline(
            scale=5, title=i18n.gettext("QR code of your referral link")
        )
        settings = await referrals.get_referral_settings()
        return page("referrals", request, referrals=mine, qr=qr, settings=settings)

    @get("/messages")
    async def messages(self, request: Request) -> Template:
        principal = member(request)
        inbox = await events.inbox(principal.id, i18n.current.get(), limit=50)
        # Shown here means opened: an offer's results count it (unread ones still look new).
        await events.mark_read(principal.id, [m["id"] for m in inbox if m["read_at"] is None])
        return page("messages", request, inbox=inbox)
