"""Referrals API: a member's code, link and referrals; the review queue; programme figures;
what referrals pay."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from litestar import Controller, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from loyalty.auth import CurrentPrincipal, requires
from loyalty.http.openapi import problems
from loyalty.http.params import PageLimit
from loyalty.referrals import schemas, service
from loyalty.referrals import stats as referral_stats


class ReferralController(Controller):
    path = "/api/v1/referrals"
    tags = ["referrals"]

    @get(
        "/",
        summary="Referrals, newest first (the review queue with status=held)",
        responses=problems(422),
        guards=[requires("referrals:review")],
    )
    async def list_referrals(
        self,
        principal: CurrentPrincipal,
        status: Annotated[
            Literal["pending", "held", "rewarded", "rejected", "reversed"] | None,
            QueryParameter(),
        ] = None,
        limit: PageLimit = 50,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> schemas.ReferralList:
        """Held referrals carry the reasons they were held: shared_contact, shared_address,
        loop, existing_member, over_cap."""
        return await referral_stats.list_referrals(principal, status, limit, cursor)

    @get(
        "/stats",
        summary="Referral programme statistics by month",
        guards=[requires("referrals:report")],
    )
    async def stats(self, principal: CurrentPrincipal) -> schemas.ProgrammeStats:
        """Sign-ups with a code per month, how many made their first qualifying purchase,
        were rewarded, held, rejected or reversed, and the conversion to rewards."""
        return await referral_stats.programme_stats(principal)

    @post(
        "/{referral_id:uuid}/approve",
        status_code=HTTP_200_OK,
        summary="Approve a held referral",
        responses=problems(409),
        guards=[requires("referrals:review")],
    )
    async def approve(
        self,
        principal: CurrentPrincipal,
        referral_id: FromPath[UUID],
        data: JSONBody[schemas.ReferralReviewCreate],
    ) -> schemas.Referral:
        """With a reason. If the referred member already made a qualifying first purchase
        both sides are rewarded now; otherwise at that purchase."""
        return await service.approve(referral_id, data, principal)

    @post(
        "/{referral_id:uuid}/reject",
        status_code=HTTP_200_OK,
        summary="Reject a held or pending referral",
        responses=problems(409),
        guards=[requires("referrals:review")],
    )
    async def reject(
        self,
        principal: CurrentPrincipal,
        referral_id: FromPath[UUID],
        data: JSONBody[schemas.ReferralReviewCreate],
    ) -> schemas.Referral:
        """With a reason; nobody is rewarded for it."""
        return await service.reject(referral_id, data, principal)


class ReferralSettingsController(Controller):
    path = "/api/v1/referral-settings"
    tags = ["referrals"]

    @get(
        "/",
        summary="What referrals pay",
        guards=[requires("members:read")],
    )
    async def get_settings(self) -> schemas.ReferralSettings:
        """Points for the referrer and the new member, the smallest first purchase that
        counts, and the monthly cap per referrer above which referrals are held."""
        return await service.get_referral_settings()

    @put(
        "/",
        summary="Change what referrals pay",
        responses=problems(422),
        guards=[requires("referrals:manage")],
    )
    async def put_settings(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.ReferralSettingsUpdate]
    ) -> schemas.ReferralSettings:
        """Admins only; applies to referrals rewarded from now on."""
        return await service.put_referral_settings(data, principal)


class MemberReferralController(Controller):
    path = "/api/v1/members/{member_id:uuid}"
    tags = ["referrals"]

    @get(
        "/referrals",
        summary="A member's referral code, link, referrals and statistics",
        guards=[requires("members:read")],
    )
    async def member_referrals(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> schemas.MemberReferrals:
        """The code and the sign-up link to share, everyone who joined with it (invited),
        how many made their first qualifying purchase (joined), were rewarded or are held,
        and who referred this member."""
        return await service.member_referrals(member_id, principal)

    @put(
        "/referrer",
        summary="Record who referred a member",
        responses=problems(409, 422),
        guards=[requires("members:write")],
    )
    async def set_referrer(
        self,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        data: JSONBody[schemas.ReferrerUpdate],
    ) -> schemas.Referral:
        """For a member who joined without giving the code. The same guards apply; a member
        who already bought before is held as an existing member. 409 if already referred."""
        return await service.set_referrer(member_id, data, principal)
