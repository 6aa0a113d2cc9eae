"""The webhook pages: subscribe (secret once, also after a double click), bad input beside
the field with nothing saved, pause and resume, deliveries with every attempt, send again."""

from __future__ import annotations

import re

import pytest

from loyalty.webhooks import service as webhooks
from tests.helpers.console import post_form, sign_in
from tests.helpers.webhooks import Receiver, deliver_outbox


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def _key(text: str) -> str:
    return re.search(r'name="key" value="([A-Za-z0-9_-]+)"', text).group(1)


async def test_subscribing_twice_with_one_form_subscribes_once(make_client, make_staff):
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    key = _key((await browser.get("/console/webhooks")).text)
    form = {"key": key, "url": "https://example.com/hooks", "events": ["points.earned"]}
    first = await post_form(browser, "/console/webhooks", form)
    second = await post_form(browser, "/console/webhooks", form)
    assert first.status_code == second.status_code == 201
    secret = re.search(r'<code class="secret">(whsec_[^<]+)</code>', first.text).group(1)
    assert secret in second.text  # the second click shows the same secret
    assert len(await webhooks.list_subscriptions()) == 1


async def test_bad_input_is_shown_beside_its_field_and_nothing_is_saved(make_client, make_staff):
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    key = _key((await browser.get("/console/webhooks")).text)
    bad_url = await post_form(
        browser, "/console/webhooks", {"key": key, "url": "ftp://x", "events": "points.earned"}
    )
    assert bad_url.status_code == 422
    assert 'id="url-error"' in bad_url.text and 'value="ftp://x"' in bad_url.text
    no_events = await post_form(
        browser, "/console/webhooks", {"key": key, "url": "https://example.com/h"}
    )
    assert no_events.status_code == 422 and 'id="events-error"' in no_events.text
    assert "choose at least one event" in no_events.text
    chinese = await post_form(
        browser,
        "/console/webhooks?lang=zh",
        {"key": key, "url": "https://example.com/h"},
    )
    assert "请至少选择一个事件" in chinese.text
    assert await webhooks.list_subscriptions() == []
    no_csrf = await browser.post("/console/webhooks", data={"key": key, "url": "https://a.b"})
    assert no_csrf.status_code == 403


async def test_pause_see_attempts_and_send_again(make_client, make_staff, client, admin, receiver):
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    key = _key((await browser.get("/console/webhooks")).text)
    await post_form(
        browser, "/console/webhooks", {"key": key, "url": receiver.url, "events": "member.enrolled"}
    )
    [sub] = await webhooks.list_subscriptions()
    receiver.fail_next = 1
    await client.post("/api/v1/members", json={"name": "Chen"}, headers=admin)
    await deliver_outbox()
    await webhooks.send_due()  # the receiver fails this one: retried later
    page = await browser.get(f"/console/webhooks/{sub.id}")
    assert page.text.count("data-attempt") == 1 and "500" in page.text
    [delivery] = await webhooks.deliveries(sub.id)
    paused = await post_form(browser, f"/console/webhooks/{sub.id}/active", {"active": "no"})
    assert paused.status_code == 303
    assert not (await webhooks.get_subscription(sub.id)).active
    sent = await post_form(
        browser, f"/console/webhooks/{sub.id}/deliveries/{delivery.id}/resend", {}
    )
    assert sent.status_code == 303
    assert await webhooks.send_due() == 0  # paused: it waits
    await post_form(browser, f"/console/webhooks/{sub.id}/active", {"active": "yes"})
    assert await webhooks.send_due() == 1
    page = await browser.get(f"/console/webhooks/{sub.id}")
    assert 'data-status="delivered"' in page.text and page.text.count("data-attempt") == 2
    other = await post_form(browser, f"/console/webhooks/{sub.id}/deliveries/{sub.id}/resend", {})
    assert other.status_code == 404


async def test_a_manager_cannot_manage_webhooks(make_client, make_staff):
    await make_staff("mia", "manager", "east")
    browser = await sign_in(make_client(), "mia")
    assert (await browser.get("/console/webhooks")).status_code == 403
    missing = await sign_in(make_client("10.0.0.2"), "mia")
    assert (
        await missing.get(f"/console/webhooks/{'0' * 8}-0000-0000-0000-{'0' * 12}")
    ).status_code == 403
