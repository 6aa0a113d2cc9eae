"""Staff scoping edges: the dashboard counts only members the viewer may see, report months
out of range are refused (not a 500), and a manager without a department manages nobody."""

from __future__ import annotations

import re

from tests.helpers.pages import csrf_from
from tests.helpers.staff import TEST_PASSWORD, staff_past_their_first_month


async def sign_in(browser, username: str):
    page = await browser.get("/console/login")
    response = await browser.post(
        "/console/login",
        data={"username": username, "password": TEST_PASSWORD, "_csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 303, response.text
    return browser


async def _member(client, admin, name: str, rep_id=None) -> dict:
    created = await client.post("/api/v1/members", json={"name": name}, headers=admin)
    assert created.status_code == 201, created.text
    member = created.json()
    if rep_id is not None:
        moved = await client.put(
            f"/api/v1/members/{member['id']}/assignment",
            json={"rep_id": str(rep_id), "reason": "test"},
            headers=admin,
        )
        assert moved.status_code == 200, moved.text
    return member


def _chart_counts(html: str) -> dict[str, int]:
    rows = re.findall(
        r'data-tier="([a-z]+)".*?<span class="chart-value">([\d,]+)</span>', html, re.S
    )
    return {tier: int(value.replace(",", "")) for tier, value in rows}


async def test_dashboard_members_by_tier_counts_only_what_a_rep_may_see(
    client, make_client, make_staff, admin
):
    """The home page's 'members by tier' chart counts the members the viewer may see: a rep,
    their own members only."""
    ravi = await make_staff("ravi", "rep", "east")
    await staff_past_their_first_month()
    await _member(client, admin, "Chen Jie", ravi.id)
    for name in ("Lin Fang", "Zhao Lei", "Qian Yu"):
        await _member(client, admin, name)  # not ravi's: in the pool
    browser = await sign_in(make_client(), "ravi")
    # The rep himself can see one member only.
    assert "Lin Fang" not in (await browser.get("/console/members")).text
    home = await browser.get("/console")
    assert home.status_code == 200
    counts = _chart_counts(home.text)
    assert sum(counts.values()) <= 1, counts


async def test_movement_page_and_csv_answer_4xx_not_500_for_an_out_of_range_month(
    make_client, make_staff
):
    """A month the form's pattern accepts but whose neighbours fall outside years 1-9999
    (9999-12, 0001-01) is refused with a 4xx, not a 500."""
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    for month in ("9999-12", "0001-01"):
        for url in ("/console/movement", "/console/movement.csv"):
            response = await browser.get(url, params={"month": month})
            assert 400 <= response.status_code < 500, (url, month, response.status_code)


async def test_scorecard_page_and_csv_answer_4xx_not_500_for_an_out_of_range_month(
    make_client, make_staff
):
    await make_staff("ada", "admin")
    browser = await sign_in(make_client(), "ada")
    for month in ("9999-12", "0001-01"):
        for url in ("/console/scorecards", "/console/scorecards.csv"):
            response = await browser.get(url, params={"month": month})
            assert response.status_code in (200, 400, 422), (url, month, response.status_code)


async def test_a_manager_without_a_department_does_not_see_every_department_s_staff(
    client, make_staff, bearer
):
    """Managers see their own department's staff: a manager with no department sees
    nobody's, not everyone's."""
    await make_staff("wei", "rep", "west")
    await make_staff("ravi", "rep", "east")
    floating = await bearer("manager", "floater", None)
    listed = await client.get("/api/v1/staff", headers=floating)
    assert listed.status_code == 200
    names = {row["username"] for row in listed.json()}
    assert "wei" not in names and "ravi" not in names, names


async def test_scorecard_csv_for_a_manager_without_a_department_is_not_company_wide(
    make_client, make_staff
):
    """Scorecards are for the manager's department only: with no department, no rep of the
    company is in the download."""
    await make_staff("wei", "rep", "west")
    await make_staff("ravi", "rep", "east")
    await make_staff("floater", "manager", None)
    browser = await sign_in(make_client(), "floater")
    download = await browser.get("/console/scorecards.csv")
    assert download.status_code in (200, 403), download.status_code
    assert "wei" not in download.text and "ravi" not in download.text, download.text
