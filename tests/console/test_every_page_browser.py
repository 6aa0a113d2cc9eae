"""Every console page a user opens from the navigation, in a real browser, in English and
Chinese: it renders (no error page), fits the screen without sideways scrolling (1280 px for
an admin, 390 px for a rep's pages) and is saved as a screenshot under
test-artifacts/pages/. The list comes from the navigation itself, so a new page is covered."""

from __future__ import annotations

from loyalty.auth import staff_principal
from loyalty.console.navigation import GROUPS
from tests.browser import browser_page, shot, staff_sign_in


def _pages(role: str) -> list[str]:
    someone = staff_principal(None, "x", role, "east")  # type: ignore[arg-type]
    return [
        link.href
        for group in GROUPS
        for link in group.links
        if link.permission is None or someone.can(link.permission)
    ]


async def _visit_all(page, served: str, pages: list[str], width: int, name: str) -> None:
    await page.set_viewport_size({"width": width, "height": 900})
    for language in ("en", "zh"):
        for href in pages:
            response = await page.goto(f"{served}{href}?lang={language}")
            assert response.status == 200, (href, language, response.status)
            assert await page.locator("main h1").count() >= 1, href
            overflow = await page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= width, (href, language, overflow)
            slug = href.removeprefix("/console/").replace("/", "-") or "home"
            await shot(page, "pages", f"{name}-{slug}-{language}")


async def test_every_admin_page_renders_in_both_languages(served, make_staff, team):
    pages = _pages("admin")
    assert len(pages) > 35
    async with browser_page() as page:
        await staff_sign_in(page, served, "ada")
        await _visit_all(page, served, pages, 1280, "admin")


async def test_a_reps_pages_fit_a_phone_in_both_languages(served, team):
    pages = _pages("rep")
    assert "/console/register" in pages and "/console/my-swaps" in pages
    async with browser_page() as page:
        await page.set_viewport_size({"width": 390, "height": 844})
        await staff_sign_in(page, served, "ravi")
        await _visit_all(page, served, pages, 390, "rep")


async def test_a_marketers_pages_render_in_both_languages(served, make_staff):
    await make_staff("mona", "marketing", "marketing")
    pages = _pages("marketing")
    assert "/console/segments" in pages and "/console/members" not in pages
    async with browser_page() as page:
        await staff_sign_in(page, served, "mona")
        await _visit_all(page, served, pages, 1280, "marketing")
