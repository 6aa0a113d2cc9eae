"""Points expiry warnings in the console: on or off, how many days before, the text in
English and Chinese, a preview of what a member reads, and the last runs of the daily job.
Marketing views it (offers:manage) and previews typed text; changing it needs
offers:approve, as sending offers does. Only `loyalty.marketing.expiry` is called."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template

from loyalty.console.common import back, convert, form, form_page, staff
from loyalty.errors import DomainError
from loyalty.infrastructure.i18n import N_
from loyalty.marketing import expiry

SAVED = {"settings": N_("The expiry warning settings are saved.")}
TEXTS = ("title_en", "title_zh", "body_en", "body_zh")


def _update(values: dict[str, Any]) -> expiry.ExpiryWarningSettingsUpdate:
    """The posted form as the settings it asks for (422 naming the field if not)."""
    data = convert(
        {
            "enabled": values.get("enabled") == "on",
            "days_before": values.get("days_before", ""),
            **{field: str(values.get(field, "")) for field in TEXTS},
        },
        expiry.ExpiryWarningSettingsUpdate,
    )
    for field in TEXTS:
        expiry.check_text(getattr(data, field), field)
    return data


class ExpiryWarningPages(Controller):
    path = "/"

    async def _page(
        self,
        request: Request,
        error: DomainError | None = None,
        values: dict[str, Any] | None = None,
        shown: Any = None,
    ) -> Template:
        staff(request, "offers:manage")
        current = await expiry.get_settings()
        shown = shown or current
        return form_page(
            request,
            "expiry_warnings.html",
            SAVED,
            error,
            current=current,
            form=values or {},
            preview={language: expiry.preview(shown, language) for language in ("en", "zh")},
            previewing=values is not None and error is None,
            runs=await expiry.last_runs(),
        )

    @get("/expiry-warnings")
    async def settings_page(self, request: Request) -> Template:
        return await self._page(request)

    @post("/expiry-warnings")
    async def save(self, request: Request) -> Template | Redirect:
        """Preview the typed text (anyone who may view), or save it (offers:approve)."""
        principal = staff(request, "offers:manage")
        values = await form(request)
        try:
            data = _update(values)
            if values.get("action") == "preview":
                return await self._page(request, values=values, shown=data)
            await expiry.update_settings(data, principal)
        except DomainError as exc:
            return await self._page(request, exc, values)
        return back("/console/expiry-warnings?saved=settings")
