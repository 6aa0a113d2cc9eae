"""Referrals in the console: the review queue of held referrals (approve or reject with a
reason, referrals:review), what referrals pay (referrals:manage) and the programme's figures
by month with a small chart (referrals:report). Same services as the API."""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from loyalty.console.common import back, convert, form, form_page, staff
from loyalty.errors import Conflict, DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.schemas import DECIMAL_PATTERN
from loyalty.referrals import schemas as referral_schemas
from loyalty.referrals import service as referrals
from loyalty.referrals import stats as referral_stats

SAVED = {
    "approved": N_("The referral is approved."),
    "rejected": N_("The referral is rejected; nobody is rewarded for it."),
    "settings": N_("The referral settings are saved."),
}

STATUSES = ("held", "pending", "rewarded", "rejected", "reversed")

HOLD_REASONS = {
    "shared_contact": N_("shares a phone or email with the referrer"),
    "shared_address": N_("shares an address with the referrer"),
    "loop": N_("referred someone up their own chain"),
    "existing_member": N_("was a customer already"),
    "over_cap": N_("the referrer is over the monthly cap"),
}

_DETAILS = (
    N_("no such referral"),
    N_("is not a cursor this API gave out"),
    N_("has more than 2 decimal places"),
)

# What each decision leaves the referral as: a second submit finding it there did its work.
_AFTER = {"approve": ("pending", "rewarded"), "reject": ("rejected",)}


class ReferralPages(Controller):
    path = "/"

    @get("/referrals", opt=covers("GET /api/v1/referrals"))
    async def queue(
        self,
        request: Request,
        status: Annotated[str, QueryParameter(max_length=16)] = "held",
        cursor: Annotated[str, QueryParameter(max_length=200)] = "",
    ) -> Template:
        """Held referrals by default, newest first; any other status on request."""
        return await queue_page(request, status, cursor)

    async def _decide(self, request: Request, referral_id: UUID, decision: str):
        principal = staff(request, "referrals:review")
        values = await form(request)
        status = values.get("status", "held")
        try:
            data = convert(
                {"reason": str(values.get("reason", "")).strip()},
                referral_schemas.ReferralReviewCreate,
            )
            act = referrals.approve if decision == "approve" else referrals.reject
            try:
                await act(referral_id, data, principal)
            except Conflict:
                # Sent twice: the first submit decided it, as asked.
                if (await referral_stats.get_referral(referral_id)).status not in _AFTER[decision]:
                    raise
        except DomainError as exc:
            return await queue_page(request, status, "", exc, values, deciding=referral_id)
        suffix = f"&status={status}" if status in STATUSES else ""
        return back(f"/console/referrals?saved={decision}d{suffix}")

    @post(
        "/referrals/{referral_id:uuid}/approve",
        opt=covers("POST /api/v1/referrals/{referral_id:uuid}/approve"),
    )
    async def approve(self, request: Request, referral_id: FromPath[UUID]) -> Template | Redirect:
        return await self._decide(request, referral_id, "approve")

    @post(
        "/referrals/{referral_id:uuid}/reject",
        opt=covers("POST /api/v1/referrals/{referral_id:uuid}/reject"),
    )
    async def reject(self, request: Request, referral_id: FromPath[UUID]) -> Template | Redirect:
        return await self._decide(request, referral_id, "reject")

    # --- settings -----------------------------------------------------------------------

    async def _settings_page(
        self,
        request: Request,
        error: DomainError | None = None,
        values: dict[str, Any] | None = None,
    ) -> Template:
        staff(request, "referrals:manage")
        current = await referrals.get_referral_settings()
        return form_page(
            request,
            "referrals_settings.html",
            SAVED,
            error,
            current=current,
            form=values
            or {
                "referrer_points": current.referrer_points,
                "referred_points": current.referred_points,
                "min_purchase": current.min_purchase,
                "monthly_cap": current.monthly_cap,
            },
        )

    @get("/referral-settings", opt=covers("GET /api/v1/referral-settings"))
    async def settings(self, request: Request) -> Template:
        return await self._settings_page(request)

    @post("/referral-settings", opt=covers("PUT /api/v1/referral-settings"))
    async def put_settings(self, request: Request) -> Template | Redirect:
        """Every field is sent, so sending the form twice saves the same."""
        principal = staff(request, "referrals:manage")
        values = await form(request)
        try:
            body = {name: str(values.get(name, "")).strip() for name in _SETTINGS}
            for name, text in body.items():
                if not text:
                    raise InvalidInput(N_("is required"), field=name)
            if not re.fullmatch(DECIMAL_PATTERN, body["min_purchase"]):
                raise InvalidInput(N_("must be a number"), field="min_purchase")
            data = convert(body, referral_schemas.ReferralSettingsUpdate)
            await referrals.put_referral_settings(data, principal)
        except DomainError as exc:
            return await self._settings_page(request, exc, values)
        return back("/console/referral-settings?saved=settings")

    # --- statistics ---------------------------------------------------------------------

    @get("/referral-figures", opt=covers("GET /api/v1/referrals/stats"))
    async def stats(self, request: Request) -> Template:
        principal = staff(request, "referrals:report")
        figures = await referral_stats.programme_stats(principal)
        months = figures.months[-12:]
        return form_page(
            request,
            "referrals_stats.html",
            SAVED,
            figures=figures,
            months=months,
            largest=max((m.signed_up for m in months), default=0) or 1,
        )


_SETTINGS = ("referrer_points", "referred_points", "min_purchase", "monthly_cap")


async def queue_page(
    request: Request,
    status: str,
    cursor: str,
    error: DomainError | None = None,
    values: dict[str, Any] | None = None,
    deciding: UUID | None = None,
) -> Template:
    principal = staff(request, "referrals:review")
    status = status if status in STATUSES else "held"
    try:
        found = await referral_stats.list_referrals(principal, status, 50, cursor or None)
    except InvalidInput:  # a cursor from elsewhere: the first page
        found = await referral_stats.list_referrals(principal, status, 50, None)
    return form_page(
        request,
        "referrals_queue.html",
        SAVED,
        error,
        found=found,
        shown_status=status,
        statuses=STATUSES,
        hold_reasons=HOLD_REASONS,
        form=values or {},
        deciding=deciding,
    )
