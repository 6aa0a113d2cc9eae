"""Webhooks to a real local HTTP receiver: signed, retried after a failure, every attempt
recorded, at least once with an id for dropping duplicates, re-sendable by hand."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.webhooks import service as webhooks
from tests.helpers.purchases import purchase_body
from tests.helpers.webhooks import Receiver, deliver_outbox


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


async def subscribe(client, admin, receiver, topics) -> str:
    response = await client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "events": topics}, headers=admin
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_events_arrive_signed_with_an_id(client, admin, pos, receiver):
    created = await subscribe(client, admin, receiver, ["member.enrolled", "points.earned"])
    secret = created["secret"]
    member = (await client.post("/api/v1/members", json={"name": "Chen"}, headers=admin)).json()
    await client.post("/api/v1/purchases", json=purchase_body(member["id"]), headers=pos)
    await deliver_outbox()
    await deliver_outbox()  # delivered twice internally: still one delivery each
    assert await webhooks.send_due() == 2
    assert len(receiver.received) == 2
    bodies = {}
    for request in receiver.received:
        headers, body = request["headers"], request["body"]
        expected = (
            "sha256="
            + hmac.new(
                secret.encode(),
                headers["X-Loyalty-Timestamp"].encode() + b"." + body,
                hashlib.sha256,
            ).hexdigest()
        )
        assert hmac.compare_digest(headers["X-Loyalty-Signature"], expected)
        event = json.loads(body)
        assert headers["X-Loyalty-Event-Id"] == event["id"]
        bodies[event["type"]] = event
    assert bodies["member.enrolled"]["data"]["member_id"] == member["id"]
    assert bodies["points.earned"]["data"]["points"] == 100


async def test_a_failed_delivery_is_retried_and_every_attempt_is_visible(client, admin, receiver):
    created = await subscribe(client, admin, receiver, ["member.enrolled"])
    receiver.fail_next = 1
    await client.post("/api/v1/members", json={"name": "Chen"}, headers=admin)
    await deliver_outbox()
    await webhooks.send_due()
    url = f"/api/v1/webhooks/{created['subscription']['id']}/deliveries"
    (delivery,) = (await client.get(url, headers=admin)).json()
    assert delivery["status"] == "pending" and delivery["last_status"] == 500
    assert await webhooks.send_due() == 0  # not due yet: backoff
    async with db.connection() as conn:
        await conn.execute("UPDATE webhook_deliveries SET next_attempt_at = now()")
    assert await webhooks.send_due() == 1
    (delivery,) = (await client.get(url, headers=admin)).json()
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    assert [a["status"] for a in delivery["history"]] == [500, 204]
    ids = {r["headers"]["X-Loyalty-Event-Id"] for r in receiver.received}
    assert len(receiver.received) == 2 and len(ids) == 1  # the same event, the same id
    resent = await client.post(
        f"/api/v1/webhooks/deliveries/{delivery['id']}/resend", headers=admin
    )
    assert resent.status_code == 202
    assert await webhooks.send_due() == 1 and len(receiver.received) == 3


async def test_an_unreachable_receiver_keeps_the_delivery(client, admin, receiver):
    created = await subscribe(client, admin, receiver, ["member.enrolled"])
    receiver.close()
    await client.post("/api/v1/members", json={"name": "Chen"}, headers=admin)
    await deliver_outbox()
    await webhooks.send_due()
    url = f"/api/v1/webhooks/{created['subscription']['id']}/deliveries"
    (delivery,) = (await client.get(url, headers=admin)).json()
    assert delivery["status"] == "pending" and "ConnectError" in delivery["last_error"]


async def test_subscriptions_are_for_admins_and_events_are_checked(client, admin, bearer, receiver):
    manager = await bearer("manager")
    denied = await client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "events": ["tier.changed"]}, headers=manager
    )
    assert denied.status_code == 403
    bad = await client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "events": ["everything"]}, headers=admin
    )
    assert bad.status_code == 422 and bad.json()["field"] == "events[0]"
    listed = (await client.get("/api/v1/webhooks", headers=admin)).json()
    assert listed == []


async def test_no_event_is_lost_when_redis_restarts_in_the_middle(
    app, settings, client, admin, receiver
):
    from loyalty.worker import create_worker

    await subscribe(client, admin, receiver, ["member.enrolled"])
    await client.post("/api/v1/members", json={"name": "Chen"}, headers=admin)
    assert await events.relay(app.state.redis) == 1  # published: its job is in Redis
    await app.state.redis.flushdb()  # Redis restarts without the queue

    async def run_worker() -> None:
        worker = create_worker(settings, burst=True, poll_delay=0.01, cron_jobs=[])
        try:
            await worker.main()
        finally:
            await worker.close()

    await run_worker()
    assert await webhooks.send_due() == 0  # the job was lost with the queue
    assert await events.relay(app.state.redis) == 0  # too early to call it lost
    async with db.connection() as conn:
        await conn.execute("UPDATE outbox_events SET published_at = now() - interval '10 minutes'")
    assert await events.relay(app.state.redis) == 1  # published again
    await run_worker()
    assert await webhooks.send_due() == 1
    assert len(receiver.received) == 1
    assert await events.relay(app.state.redis) == 0  # delivered: never again


async def test_a_paused_subscription_gets_no_deliveries(client, admin, receiver):
    """`active: false` pauses a subscription: a delivery already waiting (a retry, or one
    fanned out just before) is not posted until it is active again."""

    created = await subscribe(client, admin, receiver, ["member.enrolled"])
    await client.post("/api/v1/members", json={"name": "Chen"}, headers=admin)
    await deliver_outbox()  # the delivery is written while the subscription is active
    paused = await client.patch(
        f"/api/v1/webhooks/{created['subscription']['id']}",
        json={"active": False},
        headers=admin,
    )
    assert paused.status_code == 200 and paused.json()["active"] is False
    await webhooks.send_due()
    assert receiver.received == []
