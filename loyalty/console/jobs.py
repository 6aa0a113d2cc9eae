"""The jobs page (admins): every background job with its schedule and last run, its recent
runs, and running one now. "Run now" queues the job through arq under a job id made from the
form's key, so a double click runs it once."""

from __future__ import annotations

from uuid import uuid4

from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template

from loyalty.console.common import back, form, form_page, staff
from loyalty.errors import DomainError
from loyalty.infrastructure.i18n import N_
from loyalty.jobs import service as jobs

SAVED = {
    "queued": N_("The job is queued; the worker runs it in a moment."),
}


class JobPages(Controller):
    path = "/jobs"

    async def _list(self, request: Request, error: DomainError | None = None) -> Template:
        staff(request, "jobs:run")
        return form_page(
            request, "jobs.html", SAVED, error, states=await jobs.overview(), key=str(uuid4())
        )

    async def _detail(
        self, request: Request, name: str, error: DomainError | None = None
    ) -> Template:
        staff(request, "jobs:run")
        found = jobs.job(name)
        return form_page(
            request,
            "job.html",
            SAVED,
            error,
            job=found,
            runs=await jobs.runs(name),
            key=str(uuid4()),
        )

    @get("/")
    async def list_page(self, request: Request) -> Template:
        return await self._list(request)

    @get("/{name:str}")
    async def detail(self, request: Request, name: FromPath[str]) -> Template:
        return await self._detail(request, name)

    @post("/{name:str}/run")
    async def run_now(self, request: Request, name: FromPath[str]) -> Template | Redirect:
        """Queue the job now; the same form sent twice queues it once."""
        staff(request, "jobs:run")
        values = await form(request)
        jobs.job(name)  # an unknown job is a 404 page
        try:
            key = jobs.request_key(values.get("key", ""))
            await jobs.queue_now(request.app.state.redis, name, key)
        except DomainError as exc:
            if values.get("back") == "detail":
                return await self._detail(request, name, exc)
            return await self._list(request, exc)
        if values.get("back") == "detail":
            return back(f"/console/jobs/{name}?saved=queued")
        return back("/console/jobs?saved=queued")
