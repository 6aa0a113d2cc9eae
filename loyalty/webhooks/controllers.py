"""Webhooks API (admins): subscribers, their deliveries and attempts, sending again."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, get, patch, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from loyalty.auth import CurrentPrincipal, requires
from loyalty.http.openapi import problems
from loyalty.webhooks import schemas, service


class WebhookController(Controller):
    path = "/api/v1/webhooks"
    tags = ["webhooks"]
    guards = [requires("webhooks:manage")]

    @post("/", summary="Subscribe a URL to events", responses=problems(422))
    async def create(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.SubscriptionCreate]
    ) -> schemas.SubscriptionCreated:
        """Events: member.enrolled, points.earned, points.reversed, redemption.created,
        tier.changed, referral.rewarded, member.reassigned. The signing secret is in this
        answer only."""
        return await service.create_subscription(data, principal)

    @get("/", summary="Webhook subscribers")
    async def list_all(self) -> list[schemas.Subscription]:
        return await service.list_subscriptions()

    @patch(
        "/{subscription_id:uuid}",
        summary="Change or pause a subscriber",
        responses=problems(422),
    )
    async def update(
        self, subscription_id: FromPath[UUID], data: JSONBody[schemas.SubscriptionUpdate]
    ) -> schemas.Subscription:
        return await service.update_subscription(subscription_id, data)

    @get(
        "/{subscription_id:uuid}/deliveries",
        summary="Deliveries with every attempt",
    )
    async def deliveries(self, subscription_id: FromPath[UUID]) -> list[schemas.Delivery]:
        return await service.deliveries(subscription_id)

    @post(
        "/deliveries/{delivery_id:uuid}/resend",
        status_code=HTTP_202_ACCEPTED,
        summary="Send a delivery again",
    )
    async def resend(self, delivery_id: FromPath[UUID]) -> dict[str, str]:
        await service.resend(delivery_id)
        return {"status": "pending"}
