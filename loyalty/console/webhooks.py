"""Webhook pages (admins): subscribe a URL (the signing secret shown once, also after a
double click), pause and resume, change, and a subscriber's deliveries with every attempt
and sending one again. Same service as the API (`loyalty.webhooks.service`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from loyalty.console.common import back, convert, form, form_page, staff
from loyalty.console.once import form_key, new_key, once
from loyalty.errors import DomainError, InvalidInput, NotFound
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.webhooks import schemas, service

SAVED = {
    "paused": N_("The subscriber is paused; its deliveries wait until it is resumed."),
    "resumed": N_("The subscriber is active again; waiting deliveries go out now."),
    "changed": N_("The subscriber is saved."),
    "resent": N_("The delivery is sent again in a moment."),
}


def _events(values: dict[str, Any]) -> list[str]:
    chosen = values.get("events", [])
    chosen = chosen if isinstance(chosen, list) else [chosen]
    if not chosen:
        raise InvalidInput(N_("choose at least one event"), field="events")
    return chosen


def _input(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": str(values.get("url", "")).strip(),
        "events": _events(values),
        "description": str(values.get("description", "")).strip(),
    }


class WebhookPages(Controller):
    path = "/webhooks"

    async def _list(
        self,
        request: Request,
        error: DomainError | None = None,
        values: dict | None = None,
        created: schemas.SubscriptionCreated | None = None,
    ) -> Template:
        staff(request, "webhooks:manage")
        return form_page(
            request,
            "webhooks.html",
            SAVED,
            error,
            status=201 if created else 200,
            subscriptions=await service.list_subscriptions(),
            topics=schemas.TOPICS,
            form=values or {},
            created=created,
            key=new_key(),
        )

    async def _detail(
        self,
        request: Request,
        subscription_id: UUID,
        error: DomainError | None = None,
        values: dict | None = None,
    ) -> Template:
        staff(request, "webhooks:manage")
        subscription = await service.get_subscription(subscription_id)  # else a 404 page
        return form_page(
            request,
            "webhook.html",
            SAVED,
            error,
            s=subscription,
            deliveries=await service.deliveries(subscription_id),
            topics=schemas.TOPICS,
            form=values or {},
        )

    @get("/", opt=covers("GET /api/v1/webhooks"))
    async def list_page(self, request: Request) -> Template:
        return await self._list(request)

    @post("/", opt=covers("POST /api/v1/webhooks"))
    async def subscribe(self, request: Request) -> Template:
        """Subscribe; the same form sent twice subscribes once and shows the secret again."""
        principal = staff(request, "webhooks:manage")
        values = await form(request)
        try:
            key = form_key(values.get("key", ""), field="key")
            data = convert(_input(values), schemas.SubscriptionCreate)
            created = await once(
                request,
                principal,
                "webhook",
                key,
                schemas.SubscriptionCreated,
                lambda: service.create_subscription(data, principal),
            )
        except DomainError as exc:
            return await self._list(request, exc, values)
        return await self._list(request, created=created)

    @get(
        "/{subscription_id:uuid}",
        opt=covers("GET /api/v1/webhooks/{subscription_id:uuid}/deliveries"),
    )
    async def detail(self, request: Request, subscription_id: FromPath[UUID]) -> Template:
        return await self._detail(request, subscription_id)

    @post("/{subscription_id:uuid}", opt=covers("PATCH /api/v1/webhooks/{subscription_id:uuid}"))
    async def change(
        self, request: Request, subscription_id: FromPath[UUID]
    ) -> Template | Redirect:
        staff(request, "webhooks:manage")
        values = await form(request)
        try:
            await service.get_subscription(subscription_id)
            data = convert(_input(values), schemas.SubscriptionUpdate)
            await service.update_subscription(subscription_id, data)
        except DomainError as exc:
            return await self._detail(request, subscription_id, exc, values)
        return back(f"/console/webhooks/{subscription_id}?saved=changed")

    @post(
        "/{subscription_id:uuid}/active",
        opt=covers("PATCH /api/v1/webhooks/{subscription_id:uuid}"),
    )
    async def pause_or_resume(self, request: Request, subscription_id: FromPath[UUID]) -> Redirect:
        """Pause (active=no) or resume (active=yes): sending it twice leaves the same state."""
        staff(request, "webhooks:manage")
        values = await form(request)
        active = values.get("active") == "yes"
        await service.update_subscription(
            subscription_id, schemas.SubscriptionUpdate(active=active)
        )
        saved = "resumed" if active else "paused"
        return back(f"/console/webhooks/{subscription_id}?saved={saved}")

    @post(
        "/{subscription_id:uuid}/deliveries/{delivery_id:uuid}/resend",
        opt=covers("POST /api/v1/webhooks/deliveries/{delivery_id:uuid}/resend"),
    )
    async def resend(
        self, request: Request, subscription_id: FromPath[UUID], delivery_id: FromPath[UUID]
    ) -> Redirect:
        staff(request, "webhooks:manage")
        ids = {d.id for d in await service.deliveries(subscription_id)}
        if delivery_id not in ids:
            raise NotFound(N_("no such delivery of this subscriber"))
        await service.resend(delivery_id)
        return back(f"/console/webhooks/{subscription_id}?saved=resent#deliveries")
