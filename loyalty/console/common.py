"""What every console page shares: the signed-in staff member, rendering, forms, and errors
shown as pages (403, 404, 409, 422) rather than problem documents."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

import msgspec
from litestar import Request, Response
from litestar.exceptions import ValidationException
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from loyalty.auth import Principal
from loyalty.console.navigation import navigation
from loyalty.errors import DomainError, InvalidInput, NotAuthenticated, PermissionDenied
from loyalty.infrastructure.clock import local_today
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.i18n import gettext as _
from loyalty.settings import get_settings

LOGIN_PATH = "/console/login"

MonthQuery = Annotated[str, QueryParameter(max_length=7)]
"""A report's `month` (YYYY-MM, empty for this month: see `report_month`)."""
DepartmentQuery = Annotated[str, QueryParameter(max_length=64)]


def signed_in(request: Request) -> Principal | None:
    principal = request.scope.get("user")
    return principal if isinstance(principal, Principal) and principal.is_staff else None


def staff(request: Request, permission: str | None = None) -> Principal:
    """The signed-in staff member (else the sign-in page), holding `permission` if named."""
    principal = signed_in(request)
    if principal is None:
        raise NotAuthenticated("sign in first")
    if permission and not principal.can(permission):
        raise PermissionDenied(f"this needs the {permission} permission")
    return principal


def page(request: Request, name: str, status: int = 200, **context: Any) -> Template:
    me = signed_in(request)
    path = request.url.path
    # The unread count is taken before the request by `notices.count_unread`.
    unread = getattr(request.state, "unread_notices", 0)
    return Template(
        name,
        context={
            "me": me,
            "path": path,
            "nav": navigation(me, path, unread) if me else None,
            # The language switch keeps the page's filters (everything but `lang`).
            "kept_query": urlencode(
                [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
            ),
            "unread_notices": unread,
            **context,
        },
        status_code=status,
    )


def problem(exc: DomainError) -> str:
    """An error as one line on a page, in the page's language: the field it is about, then
    what is wrong. Details a service raises are translated where the catalog has them."""
    detail = _(exc.detail)
    return f"{_(exc.field)}: {detail}" if exc.field else detail


def field_errors(exc: DomainError | None) -> dict[str, str]:
    """The error to show under its form field (`ui.field_error(name)`), translated."""
    return {exc.field: _(exc.detail)} if exc is not None and exc.field else {}


def saved_notice(request: Request, notices: Mapping[str, str]) -> str | None:
    """The message for the `?saved=` key a form redirected with (translated), if known."""
    saved = request.query_params.get("saved")
    return _(notices[saved]) if saved in notices else None


def form_page(
    request: Request,
    name: str,
    notices: Mapping[str, str],
    error: DomainError | None = None,
    status: int = 200,
    **context: Any,
) -> Template:
    """A page that holds forms: after a failed post, the problem at its status; after a
    redirect back, the notice that the change is saved."""
    return page(
        request,
        name,
        status=error.status_code if error else status,
        error=problem(error) if error else None,
        field_errors=field_errors(error),
        saved=saved_notice(request, notices),
        **context,
    )


def report_month(value: str) -> str:
    """A report's `month` query parameter (YYYY-MM); empty means this month."""
    return value.strip() or this_month()


def this_month() -> str:
    return local_today().strftime("%Y-%m")


def csv_download(body: str | bytes, filename: str) -> Response:
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def back(url: str) -> Redirect:
    return Redirect(url, status_code=303)


async def form(request: Request) -> dict[str, Any]:
    """The posted form as a dict: one value per field, lists for fields given more than once."""
    data = await request.form()
    values: dict[str, Any] = {}
    for key in data:
        if key == "_csrf_token":
            continue
        found = data.getall(key)
        values[key] = found if len(found) > 1 else found[0]
    return values


# msgspec's reasons, as a form shows them beside the field (and the catalog translates).
_REASONS = (
    (re.compile(r"^Expected `(int|float|decimal)` (>=|>) "), N_("is too small")),
    (re.compile(r"^Expected `(int|float|decimal)` (<=|<) "), N_("is too large")),
    (re.compile(r"^Expected `(int|float|decimal)`"), N_("must be a number")),
    (re.compile(r"^Expected `str` of length >= "), N_("is required")),
    (re.compile(r"^Expected `str` of length <= "), N_("is too long")),
    (re.compile(r"^Expected `str` matching regex"), N_("is not in the expected form")),
    (re.compile(r"^Expected `(date|datetime)`"), N_("is not a date")),
    (re.compile(r"^Invalid enum value"), N_("is not one of the choices")),
    (re.compile(r"^Object missing required field"), N_("is required")),
)
_AT = re.compile(r" - at `\$\.([A-Za-z_][\w]*)")
_MISSING = re.compile(r"^Object missing required field `(\w+)`")


def validation_problem(exc: msgspec.ValidationError) -> InvalidInput:
    """A msgspec validation error as the form field it is about and a reason in plain words
    (translated when shown); the first field of a nested path names it."""
    text = str(exc)
    found = _AT.search(text) or _MISSING.search(text)
    field = found.group(1) if found else None
    reason = next((plain for pattern, plain in _REASONS if pattern.search(text)), None)
    return InvalidInput(reason or text.split(" - at ")[0], field=field)


def convert(values: dict[str, Any], schema: type) -> Any:
    """Form values into an API input schema (same validation as the API), or 422 naming
    the field."""
    try:
        return msgspec.convert(values, schema, strict=False)
    except msgspec.ValidationError as exc:
        raise validation_problem(exc) from None


def chosen_id(value: Any, field: str) -> UUID:
    """The id a form's select or tick box chose; none or a broken one is that field's problem."""
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidInput("choose one", field=field) from None


def local_datetime(value: str, field: str) -> datetime | None:
    """A datetime-local input (business time zone); empty means none."""
    if not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip()).replace(tzinfo=get_settings().tz)
    except ValueError:
        raise InvalidInput("is not a date and time", field=field) from None


def words(text: str) -> list[str]:
    """A comma-separated form field as a list."""
    return [part.strip() for part in text.replace("，", ",").split(",") if part.strip()]


TITLES = {
    400: N_("The request could not be read"),
    403: N_("Not allowed"),
    404: N_("Not found"),
    409: N_("That cannot be done now"),
    422: N_("Please check the form"),
    429: N_("Too many attempts"),
    503: N_("Temporarily unavailable"),
}


def _error_page(request: Request, status: int, detail: str) -> Response:
    title = _(TITLES[status]) if status in TITLES else _("Something went wrong")
    return page(request, "error.html", status=status, title=title, detail=detail)


def domain_error_page(request: Request, exc: DomainError) -> Response:
    if isinstance(exc, NotAuthenticated):
        return Redirect(LOGIN_PATH, status_code=303 if request.method == "POST" else 302)
    return _error_page(request, exc.status_code, problem(exc))


def validation_error_page(request: Request, exc: ValidationException) -> Response:
    return _error_page(request, 400, str(exc.detail))


EXCEPTION_HANDLERS = {DomainError: domain_error_page, ValidationException: validation_error_page}
