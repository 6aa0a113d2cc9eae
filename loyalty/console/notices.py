"""A staff user's notices in the console: all of them, newest first, marked read one at a
time or all at once, and the unread count that every page's navigation shows. Only
`loyalty.reps.notices` is called, as the API does."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from loyalty.console.common import back, form_page, signed_in, staff
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.reps import notices as rep_notices

SAVED = {
    "read": N_("The notice is marked as read."),
    "all_read": N_("All notices are marked as read."),
}


async def count_unread(request: Request) -> None:
    """Before every console request: the signed-in staff user's unread count, kept on the
    request for `page` to give the navigation, so no template or controller asks for it."""
    principal = signed_in(request)
    if principal is not None:
        request.state.unread_notices = await rep_notices.unread_count(principal)


class NoticePages(Controller):
    path = "/"

    @get("/notices", opt=covers("GET /api/v1/notices"))
    async def notices(self, request: Request) -> Template:
        principal = staff(request)
        return form_page(request, "notices.html", SAVED, items=await rep_notices.notices(principal))

    @post(
        "/notices/{notice_id:uuid}/read", opt=covers("POST /api/v1/notices/{notice_id:uuid}/read")
    )
    async def read(self, request: Request, notice_id: FromPath[UUID]) -> Redirect:
        # Someone else's notice is a 404 page, like the API's answer.
        await rep_notices.mark_read(staff(request), notice_id)
        return back("/console/notices?saved=read")

    @post("/notices/read", opt=covers("POST /api/v1/notices/read"))
    async def read_all(self, request: Request) -> Redirect:
        await rep_notices.mark_all_read(staff(request))
        return back("/console/notices?saved=all_read")
