"""Members signing in to their own API and to the portal pages, with codes caught by mail."""

from __future__ import annotations

from collections.abc import Callable

from httpx import AsyncClient

from tests.helpers.mail import Mailbox
from tests.helpers.pages import csrf_from


async def enrol(
    client: AsyncClient,
    admin: dict[str, str],
    name: str = "Chen Jie",
    email: str = "chen@example.com",
    **fields,
) -> dict:
    response = await client.post(
        "/api/v1/members", json={"name": name, "email": email, **fields}, headers=admin
    )
    assert response.status_code == 201, response.text
    return response.json()


async def sign_in(client: AsyncClient, mailbox: Mailbox, email: str) -> dict[str, str]:
    sent = await client.post("/api/v1/me/sign-in/code", json={"identifier": email})
    assert sent.status_code == 202, sent.text
    code = mailbox.last_code(email)
    response = await client.post("/api/v1/me/sign-in", json={"identifier": email, "code": code})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def signed_in_browser(
    make_client: Callable[[str], AsyncClient],
    mailbox: Mailbox,
    email: str,
    address: str = "10.7.7.7",
) -> AsyncClient:
    browser = make_client(address)
    page = await browser.get("/portal/sign-in")
    sent = await browser.post(
        "/portal/sign-in", data={"identifier": email, "_csrf_token": csrf_from(page.text)}
    )
    assert sent.status_code == 200, sent.text
    code = mailbox.last_code(email)
    done = await browser.post(
        "/portal/sign-in/code",
        data={"identifier": email, "code": code, "_csrf_token": csrf_from(sent.text)},
    )
    assert done.status_code == 303 and done.headers["location"] == "/portal"
    return browser
