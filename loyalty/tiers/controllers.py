"""Tiers API: the ladder and its service levels, settings, what-if, a member's tier and
overrides."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from loyalty.auth import CurrentPrincipal, requires
from loyalty.errors import InvalidInput
from loyalty.http.openapi import problems
from loyalty.tiers import evaluation, schemas, service


class TierController(Controller):
    path = "/api/v1/tiers"
    tags = ["tiers"]

    @get(
        "/",
        summary="The tier ladder",
        guards=[requires("members:read")],
    )
    async def list_tiers(self) -> list[schemas.Tier]:
        """Every tier by rank, switched on or off, with its threshold, earn multiplier and
        service level."""
        return await service.list_tiers()

    @put(
        "/{code:str}",
        summary="Create or change a tier",
        responses=problems(422),
        guards=[requires("tiers:manage")],
    )
    async def put_tier(
        self, principal: CurrentPrincipal, code: FromPath[str], data: JSONBody[schemas.TierUpdate]
    ) -> schemas.Tier:
        """Admins only. The resulting ladder must make sense: unique ranks, the lowest
        switched-on tier at threshold 0, thresholds rising with rank; otherwise 422 names
        the field. Members move at the next evaluation."""
        if not 1 <= len(code) <= 32 or not code.replace("_", "").replace("-", "").isalnum():
            raise InvalidInput("letters, digits, - and _ only (1-32)", field="code")
        return await service.put_tier(code.lower(), data, principal)

    @post(
        "/simulate",
        status_code=HTTP_200_OK,
        summary="What-if: evaluate a proposed ladder without changing anything",
        responses=problems(422),
        guards=[requires("tiers:manage")],
    )
    async def simulate(self, data: JSONBody[schemas.SimulationCreate]) -> schemas.Simulation:
        """How many members would sit in each tier, and how many would move up or down, if an
        evaluation ran now with this ladder (same rules as the real one)."""
        return await evaluation.simulate(data)


class TierSettingsController(Controller):
    path = "/api/v1/tier-settings"
    tags = ["tiers"]

    @get(
        "/",
        summary="Tier qualification settings",
        guards=[requires("members:read")],
    )
    async def get_settings(self) -> schemas.TierSettings:
        """The qualification basis (net spend or points earned), window and grace period."""
        return await service.get_settings_()

    @put(
        "/",
        summary="Change tier qualification settings",
        guards=[requires("tiers:manage")],
    )
    async def put_settings(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.TierSettingsUpdate]
    ) -> schemas.TierSettings:
        """Admins only; applies from the next purchase and evaluation."""
        return await service.put_settings(data, principal)


class MemberTierController(Controller):
    path = "/api/v1/members/{member_id:uuid}/tier"
    tags = ["tiers"]

    @get(
        "/",
        summary="A member's tier and progress",
        guards=[requires("members:read")],
    )
    async def status(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> schemas.MemberTier:
        """Current tier and since when, qualifying value, the next tier and what it still
        takes, what it takes to keep the tier at the next evaluation, the service level, and
        every tier change with its reason."""
        return await service.status(member_id, principal)

    @put(
        "/override",
        summary="Override a member's tier until a date",
        responses=problems(422),
        guards=[requires("tiers:override")],
    )
    async def set_override(
        self,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        data: JSONBody[schemas.TierOverrideUpdate],
    ) -> schemas.MemberTier:
        """Managers and above, with a reason and an end date; when it ends the member returns
        to the tier their qualification earns."""
        return await service.set_override(member_id, data, principal)

    @delete(
        "/override",
        status_code=HTTP_200_OK,
        summary="End a member's tier override now",
        responses=problems(409),
        guards=[requires("tiers:override")],
    )
    async def end_override(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> schemas.MemberTier:
        """The member returns at once to the tier their qualification earns."""
        return await service.end_override(member_id, principal)
