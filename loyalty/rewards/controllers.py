"""Rewards API: the catalog and its voucher pools, what a member may redeem, redemptions."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from loyalty.auth import CurrentPrincipal, requires
from loyalty.http.openapi import problems, replayed
from loyalty.http.responses import created_or_replayed
from loyalty.rewards import catalog, eligibility, redemptions, schemas, vouchers


class RewardController(Controller):
    path = "/api/v1/rewards"
    tags = ["rewards"]

    @get(
        "/",
        summary="The rewards catalog",
        guards=[requires("members:read")],
    )
    async def list_rewards(
        self, include_inactive: Annotated[bool, QueryParameter()] = False
    ) -> list[schemas.Reward]:
        """Every reward on offer, cheapest first; `include_inactive` adds switched-off ones."""
        return await catalog.list_rewards(include_inactive)

    @post(
        "/",
        summary="Add a reward to the catalog",
        responses=problems(422),
        guards=[requires("rewards:manage")],
    )
    async def create_reward(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.RewardCreate]
    ) -> schemas.Reward:
        """Admins and marketing. Kind goods, voucher (a unique code per redemption, generated
        or from an imported pool), event_seat (limited seats: set stock) or bonus_service."""
        return await catalog.create_reward(data, principal)

    @get(
        "/{reward_id:uuid}",
        summary="One reward",
        guards=[requires("members:read")],
    )
    async def get_reward(self, reward_id: FromPath[UUID]) -> schemas.Reward:
        return await catalog.get_reward(reward_id)

    @patch(
        "/{reward_id:uuid}",
        summary="Change a reward",
        responses=problems(422),
        guards=[requires("rewards:manage")],
    )
    async def update_reward(
        self,
        principal: CurrentPrincipal,
        reward_id: FromPath[UUID],
        data: JSONBody[schemas.RewardUpdate],
    ) -> schemas.Reward:
        """Only the fields sent change. Setting `active` to false withdraws it from offer;
        redemptions already made stand."""
        return await catalog.update_reward(reward_id, data, principal)

    @post(
        "/{reward_id:uuid}/vouchers",
        status_code=HTTP_200_OK,
        summary="Import voucher codes into a reward's pool",
        responses=problems(422),
        guards=[requires("rewards:manage")],
    )
    async def import_vouchers(
        self,
        principal: CurrentPrincipal,
        reward_id: FromPath[UUID],
        data: JSONBody[schemas.VoucherImportCreate],
    ) -> schemas.VoucherImportResult:
        """Up to 10,000 codes a call; codes already in the pool are skipped, so a repeated
        import changes nothing."""
        return await vouchers.import_vouchers(reward_id, data, principal)


class MemberRewardController(Controller):
    path = "/api/v1/members/{member_id:uuid}"
    tags = ["rewards"]

    @get(
        "/rewards",
        summary="What a member may redeem, and why not yet",
        guards=[requires("members:read")],
    )
    async def catalog(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> schemas.MemberCatalog:
        """Rewards on offer now. Each says whether the member may redeem it, and if not the
        reasons: not_enough_points, points_in_debt, tier_too_low, limit_reached,
        out_of_stock, not_started."""
        return await eligibility.member_catalog(member_id, principal)

    @post(
        "/redemptions",
        summary="Redeem a reward",
        responses={**replayed(schemas.Redemption), **problems(422)},
        guards=[requires("redemptions:write")],
    )
    async def redeem(
        self,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        data: JSONBody[schemas.RedemptionCreate],
    ) -> Response[schemas.Redemption]:
        """Takes available points (pending points and points owed do not count), oldest
        expiry first, and the stock, and issues voucher codes or seat tickets, all in one
        transaction. 201 when made; 200 with the original when the idempotency_key was used
        before with the same reward and quantity, 409 if with a different one. A failed
        check changes nothing: 409 (points, debt, stock, limit) or 422 (tier, validity)."""
        redemption, created = await redemptions.redeem(member_id, data, principal)
        return created_or_replayed(redemption, created)

    @get(
        "/redemptions",
        summary="A member's redemptions",
        guards=[requires("members:read")],
    )
    async def redemptions(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> list[schemas.Redemption]:
        """Newest first, with status (requested, fulfilled, cancelled) and codes."""
        return await redemptions.member_redemptions(member_id, principal)


class RedemptionController(Controller):
    path = "/api/v1/redemptions"
    tags = ["rewards"]

    @post(
        "/{redemption_id:uuid}/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel a redemption",
        responses=problems(409),
        guards=[requires("redemptions:write")],
    )
    async def cancel(
        self,
        principal: CurrentPrincipal,
        redemption_id: FromPath[UUID],
        data: JSONBody[schemas.CancellationCreate],
    ) -> schemas.Redemption:
        """With a reason. The points come back as a new ledger entry, spendable at once, and
        the stock is restored; unissued pool vouchers return to the pool."""
        return await redemptions.cancel(redemption_id, data, principal)

    @post(
        "/{redemption_id:uuid}/fulfil",
        status_code=HTTP_200_OK,
        summary="Mark a redemption fulfilled",
        responses=problems(409),
        guards=[requires("redemptions:fulfil")],
    )
    async def fulfil(
        self, principal: CurrentPrincipal, redemption_id: FromPath[UUID]
    ) -> schemas.Redemption:
        """The goods were handed over, the voucher used or the seat taken."""
        return await redemptions.fulfil(redemption_id, principal)
