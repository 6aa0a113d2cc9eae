"""The notices page: every notice newest first, unread ones marked, marked read one at a
time or all at once through CSRF forms, the unread count in the navigation, in Chinese too."""

from __future__ import annotations

import re

from tests.helpers.console import post_form, sign_in
from tests.helpers.staff import notice_for


def badge(html: str) -> int:
    """The unread count beside "Notices" in the navigation (0 when there is no badge)."""
    found = re.search(
        r'href="/console/notices"[^>]*>[^<]*<span class="count" data-unread="(\d+)"', html
    )
    return int(found.group(1)) if found else 0


async def test_notices_page(make_client, team):
    ravi = team["staff"]["ravi"].id
    chen = team["members"]["Chen Jie"]["id"]
    old = await notice_for(ravi, "Chen Jie returns to the pool", hours_ago=30, member_id=chen)
    new = await notice_for(ravi, "Follow-up overdue", hours_ago=2, body="Call Chen Jie today")
    await notice_for(team["staff"]["rosa"].id, "Rosa only")
    browser = await sign_in(make_client(), "ravi")

    home = (await browser.get("/console")).text
    assert badge(home) == 2
    page = (await browser.get("/console/notices")).text
    assert page.index("Follow-up overdue") < page.index("Chen Jie returns to the pool")
    assert "Rosa only" not in page and "Call Chen Jie today" in page
    assert page.count("data-unread class") == 0 and page.count(" data-unread>") == 2
    assert f'href="/console/members/{chen}"' in page  # the notice names a member
    assert 'aria-current="page">Notices' in page

    read = await post_form(browser, f"/console/notices/{old}/read", {}, "/console/notices")
    assert read.status_code == 303 and read.headers["location"] == "/console/notices?saved=read"
    page = (await browser.get(read.headers["location"])).text
    assert "The notice is marked as read." in page and badge(page) == 1
    assert re.search(rf'data-notice="{new}" class="unread"', page)
    assert not re.search(rf'data-notice="{old}" class="unread"', page)

    # Without the CSRF token, nothing is marked.
    forged = await browser.post(f"/console/notices/{new}/read", data={})
    assert forged.status_code == 403
    assert badge((await browser.get("/console")).text) == 1

    # Another staff user's notice is not found, and stays unread.
    rosa_browser = await sign_in(make_client("10.5.5.5"), "rosa")
    refused = await post_form(rosa_browser, f"/console/notices/{new}/read", {})
    assert refused.status_code == 404
    assert badge((await browser.get("/console")).text) == 1

    done = await post_form(browser, "/console/notices/read", {}, "/console/notices")
    assert done.status_code == 303
    page = (await browser.get(done.headers["location"])).text
    assert "All notices are marked as read." in page and badge(page) == 0
    assert "Mark all as read" not in page and 'class="unread"' not in page


async def test_notices_page_in_chinese(make_client, team):
    await notice_for(team["staff"]["ravi"].id, "Follow-up overdue")
    browser = await sign_in(make_client(), "ravi")
    page = (await browser.get("/console/notices", headers={"Accept-Language": "zh-CN"})).text
    assert '<html lang="zh-Hans">' in page
    for text in ("通知", "标为已读", "全部标为已读", "未读"):
        assert text in page, text
    assert badge(page) == 1
    empty = await sign_in(make_client("10.6.6.6"), "rosa")
    page = (await empty.get("/console/notices", headers={"Accept-Language": "zh-CN"})).text
    assert "Mark" not in page and badge(page) == 0
