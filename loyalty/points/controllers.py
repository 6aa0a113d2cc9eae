"""Points API: purchases (single and batch), returns, balances, statements, adjustments,
earning rules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from litestar import Controller, Request, Response, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from loyalty.auth import CurrentPrincipal, requires
from loyalty.http.middleware import rfc3339_query
from loyalty.http.openapi import problems, replayed
from loyalty.http.params import PageLimit
from loyalty.http.responses import created_or_replayed
from loyalty.http.routes import integration_only
from loyalty.points import purchases, schemas, service
from loyalty.workflows import returns, sales


class PurchaseController(Controller):
    path = "/api/v1/purchases"
    tags = ["purchases"]

    @post(
        "/",
        summary="Post a purchase",
        responses={**replayed(schemas.Purchase), **problems(422)},
        guards=[requires("purchases:write")],
        status_code=HTTP_201_CREATED,
        opt=integration_only("tills and the web shop post sales; staff do not type them in"),
    )
    async def post_purchase(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.PurchaseCreate]
    ) -> Response[schemas.Purchase]:
        """Post a sale with your own `external_id`. Points are earned once: sending the same
        purchase again answers 200 with the original result; the same `external_id` with a
        different body answers 409. The lines must add up to the total."""
        purchase = await sales.post_purchase(data, principal)
        return created_or_replayed(purchase, purchase.status == "created")

    @post(
        "/batch",
        summary="Post up to 1,000 purchases",
        guards=[requires("purchases:write")],
        status_code=HTTP_200_OK,
        opt=integration_only("shops send their day's sales in batches (files go to imports)"),
    )
    async def post_batch(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.PurchaseBatchCreate]
    ) -> schemas.BatchResult:
        """Each purchase is applied on its own with the same exactly-once rule; the answer
        has one item per purchase with its status (201, 200 replayed, or 4xx with a problem)."""
        return await sales.post_batch(data, principal)

    @get(
        "/{external_id:str}",
        summary="Get a purchase",
        guards=[requires("members:read")],
        opt=integration_only(
            "a till looks a sale up by its own id; staff see purchases on the member's statement"
        ),
    )
    async def get_purchase(
        self, principal: CurrentPrincipal, external_id: FromPath[str]
    ) -> schemas.Purchase:
        """A purchase by your `external_id`, with its points and what was returned."""
        return await purchases.get_purchase(external_id, principal)

    @post(
        "/{external_id:str}/returns",
        summary="Return lines of a purchase",
        responses={**replayed(schemas.Return), **problems(422)},
        guards=[requires("purchases:write")],
        status_code=HTTP_201_CREATED,
        opt=integration_only("returns are taken at the till that took the sale"),
    )
    async def post_return(
        self,
        principal: CurrentPrincipal,
        external_id: FromPath[str],
        data: JSONBody[schemas.ReturnCreate],
    ) -> Response[schemas.Return]:
        """Return all or part of a purchase under your own `return_id`; the points of the
        returned lines are reversed, pending points first. Points already spent become a
        debt that blocks redemption until later earning repays it. Replays answer 200."""
        result = await returns.post_return(external_id, data, principal)
        return created_or_replayed(result, result.status == "created")


class MemberPointsController(Controller):
    path = "/api/v1/members/{member_id:uuid}/points"
    tags = ["points"]

    @get(
        "/",
        summary="A member's points balance",
        guards=[requires("members:read")],
    )
    async def balance(
        self, principal: CurrentPrincipal, member_id: FromPath[UUID]
    ) -> schemas.Balance:
        """Available, pending (not yet spendable), debt, lifetime earned, and the points
        expiring within 30, 60 and 90 days."""
        return await service.balance(member_id, principal)

    @get(
        "/entries",
        summary="A member's points statement",
        responses=problems(422),
        guards=[requires("members:read")],
    )
    async def entries(
        self,
        request: Request,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        kind: Annotated[str | None, QueryParameter(max_length=24)] = None,
        since: Annotated[datetime | None, QueryParameter()] = None,
        until: Annotated[datetime | None, QueryParameter()] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: PageLimit = 50,
    ) -> schemas.EntryPage:
        """Ledger entries newest first, filtered by kind and time; pass `next_cursor` back
        as `cursor` for the next page."""
        rfc3339_query(request, "since", "until")
        return await service.statement(
            member_id,
            principal,
            kind=kind,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )

    @post(
        "/adjustments",
        summary="Adjust a member's points",
        responses={**replayed(schemas.Adjustment), **problems(422)},
        guards=[requires("points:adjust")],
        status_code=HTTP_201_CREATED,
    )
    async def adjust(
        self,
        principal: CurrentPrincipal,
        member_id: FromPath[UUID],
        data: JSONBody[schemas.AdjustmentCreate],
    ) -> Response[schemas.Adjustment]:
        """Managers and above: add or deduct points with a mandatory reason. Send an
        `idempotency_key` so a retry cannot adjust twice."""
        result, created = await service.adjust(member_id, data, principal)
        return created_or_replayed(result, created)


class EarningRulesController(Controller):
    path = "/api/v1/points/rules"
    tags = ["points"]

    @get(
        "/",
        summary="Earning rules",
        guards=[requires("members:read")],
    )
    async def get_rules(self) -> schemas.EarningRules:
        """Points per currency unit, category multipliers, pending days and expiry months."""
        return await service.get_rules(fresh=True)

    @put(
        "/",
        summary="Change the earning rules",
        responses=problems(422),
        guards=[requires("rules:manage")],
    )
    async def put_rules(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.EarningRulesUpdate]
    ) -> schemas.EarningRules:
        """Admins only; applies to purchases posted from now on."""
        return await service.update_rules(data, principal)
