"""Staff signing in to the console and posting its forms."""

from __future__ import annotations

from httpx import AsyncClient, Response

from tests.helpers.pages import csrf_from
from tests.helpers.staff import TEST_PASSWORD


async def sign_in(browser: AsyncClient, username: str) -> AsyncClient:
    page = await browser.get("/console/login")
    response = await browser.post(
        "/console/login",
        data={"username": username, "password": TEST_PASSWORD, "_csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 303, response.text
    return browser


async def post_form(
    browser: AsyncClient, url: str, data: dict, page_url: str | None = None
) -> Response:
    page = await browser.get(page_url or "/console")
    return await browser.post(url, data={**data, "_csrf_token": csrf_from(page.text)})
