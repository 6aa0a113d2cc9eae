"""The monthly movement report in the console: the page (month picker, bar chart, tables per
movement with links to the member page, by department and by rep), the CSV, and who may
open them."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from loyalty.settings import get_settings
from tests.helpers.console import sign_in
from tests.helpers.marketing import buy


def this_month() -> str:
    return datetime.now(UTC).astimezone(get_settings().tz).strftime("%Y-%m")


async def test_a_rep_or_a_sales_manager_cannot_open_the_movement_report(make_client, team):
    for username in ("ravi", "mia"):
        browser = await sign_in(make_client(), username)
        for url in ("/console/movement", "/console/movement.csv"):
            assert (await browser.get(url)).status_code == 403, (username, url)
        assert "/console/movement" not in (await browser.get("/console")).text


async def test_a_marketing_manager_sees_the_report_in_both_languages_and_downloads_the_csv(
    make_client,
    make_staff,
    team,
    client,
    pos,
):
    await make_staff("mona", "manager", "marketing")
    chen = team["members"]["Chen Jie"]["id"]
    lin = team["members"]["Lin Fang"]["id"]
    await buy(client, pos, chen, "6000.00", days_ago=0.01)  # up a tier
    await buy(client, pos, lin, "100.00", days_ago=200)
    await buy(client, pos, lin, "100.00", days_ago=0.02)  # won back

    browser = await sign_in(make_client(), "mona")
    assert "/console/movement" in (await browser.get("/console/movement")).text  # its own tab
    response = await browser.get("/console/movement")
    assert response.status_code == 200, response.text[-500:]
    html = response.text
    month = re.search(r'name="month" value="(\d{4}-\d{2})"', html).group(1)
    assert month == this_month()
    assert 'data-movement="up" data-count="1"' in html
    assert 'data-movement="won_back" data-count="1"' in html
    up = html.split('id="movement-up"')[1].split("</section>")[0]
    assert f'href="/console/members/{chen}"' in up and "Chen Jie" in up
    won = html.split('id="movement-won_back"')[1].split("</section>")[0]
    assert f'href="/console/members/{lin}"' in won
    assert '<tr data-key="east">' in html  # by department
    assert '<tr data-key="ravi">' in html and '<tr data-key="rosa">' in html  # by rep
    assert f'href="/console/movement.csv?month={month}"' in html

    zh = await browser.get("/console/movement", headers={"Accept-Language": "zh-CN"})
    assert zh.status_code == 200 and "变动报告" in zh.text and "Movement report" not in zh.text

    download = await browser.get("/console/movement.csv", params={"month": month})
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert f"movement-{month}.csv" in download.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert {(r["movement"], r["name"]) for r in rows} >= {
        ("up", "Chen Jie"),
        ("won_back", "Lin Fang"),
    }

    bad = await browser.get("/console/movement", params={"month": "2026-13"})
    assert bad.status_code == 422 and "YYYY-MM" in bad.text
    assert (await browser.get("/console/movement.csv?month=2026-13")).status_code == 422


async def test_an_admin_opens_the_report_in_both_languages(make_client, team):
    browser = await sign_in(make_client(), "ada")
    for language in ("en", "zh-CN"):
        response = await browser.get(
            "/console/movement", params={"month": "2025-01"}, headers={"Accept-Language": language}
        )
        assert response.status_code == 200, response.text[-500:]
        assert 'value="2025-01"' in response.text
    assert "/console/movement" in (await browser.get("/console/movement")).text  # its own tab
