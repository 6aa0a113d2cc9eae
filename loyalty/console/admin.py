"""Administration pages: staff, departments, integration API keys, the tier ladder and the
earning rules. Each page needs the same permission as the matching API endpoint."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath
from litestar.response import Redirect, Template
from msgspec import UNSET

from loyalty.auth import API_KEY_SCOPES, ROLES
from loyalty.console.common import back, convert, form, form_page, staff
from loyalty.errors import DomainError, InvalidInput, NotFound
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.points import schemas as point_schemas
from loyalty.points import service as points
from loyalty.staff import schemas as staff_schemas
from loyalty.staff import service as staff_service
from loyalty.tiers import schemas as tier_schemas
from loyalty.tiers import service as tiers
from loyalty.workflows import staff_changes

SAVED = {
    "created": N_("The staff user is created."),
    "deactivated": N_("The staff user is deactivated; their sessions ended."),
    "moved": N_("The department is changed."),
    "revoked": N_("The API key is revoked."),
    "tier": N_("The tier is saved."),
    "tier_settings": N_("The qualification settings are saved."),
    "rules": N_("The earning rules are saved."),
}


TIER_CODE = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def tier_body(values: dict[str, Any]) -> dict[str, Any]:
    """A tier form as the API's TierUpdate body: every field, service level included."""
    sponsor = str(values.get("executive_sponsor_role", "")).strip()
    return {
        "name": str(values.get("name", "")).strip(),
        "rank": values.get("rank", ""),
        "threshold": _decimal(values.get("threshold", ""), "threshold"),
        "earn_multiplier": _decimal(values.get("earn_multiplier", ""), "earn_multiplier"),
        "enabled": values.get("enabled") == "on",
        # Converted on its own, so an error names the field ("benefits"), not "service_level".
        "service_level": msgspec.to_builtins(
            convert(
                {
                    "contact_cadence_days": values.get("contact_cadence_days", ""),
                    "response_time_hours": values.get("response_time_hours", ""),
                    "named_service_team": values.get("named_service_team") == "on",
                    "executive_sponsor_role": sponsor or None,
                    "birthday_gift": str(values.get("birthday_gift", "")).strip(),
                    "event_invitations": values.get("event_invitations") == "on",
                    "benefits": str(values.get("benefits", "")).strip(),
                },
                tier_schemas.ServiceLevel,
            )
        ),
    }


def _decimal(value: Any, field: str) -> Decimal:
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(N_("is not a number"), field=field) from None


class AdminPages(Controller):
    path = "/"

    # --- staff --------------------------------------------------------------------------

    async def _staff_page(
        self,
        request: Request,
        error: DomainError | None = None,
        created: staff_schemas.StaffCreated | None = None,
    ) -> Template:
        principal = staff(request, "staff:read")
        department = principal.department_limit
        return form_page(
            request,
            "staff.html",
            SAVED,
            error,
            status=201 if created else 200,
            staff=await staff_service.list_staff(department=department),
            roles=ROLES,
            created=created,
        )

    @get("/staff", opt=covers("GET /api/v1/staff"))
    async def staff_list(self, request: Request) -> Template:
        return await self._staff_page(request)

    @post("/staff", opt=covers("POST /api/v1/staff"))
    async def create_staff(self, request: Request) -> Template:
        staff(request, "staff:manage")
        values = await form(request)
        try:
            data = convert(
                {
                    "username": values.get("username", "").strip(),
                    "role": values.get("role", ""),
                    "display_name": values.get("display_name", "").strip() or None,
                    "department": values.get("department", "").strip() or None,
                },
                staff_schemas.StaffCreate,
            )
            created = await staff_service.create_staff(data)
        except DomainError as exc:
            return await self._staff_page(request, exc)
        return await self._staff_page(request, created=created)

    @post("/staff/{staff_id:uuid}/deactivate", opt=covers("PATCH /api/v1/staff/{staff_id:uuid}"))
    async def deactivate(self, request: Request, staff_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, "staff:manage")
        try:
            await staff_changes.update_staff(
                staff_id,
                staff_schemas.StaffUpdate(active=False, display_name=UNSET),
                actor=principal,
                redis=request.app.state.redis,
                session_store=request.app.stores.get("sessions"),
            )
        except DomainError as exc:
            return await self._staff_page(request, exc)
        return back("/console/staff?saved=deactivated")

    # --- departments --------------------------------------------------------------------

    async def _department_page(self, request: Request, error: DomainError | None = None):
        staff(request, "staff:manage")
        everyone = await staff_service.list_staff()
        departments: dict[str, dict[str, list]] = {}
        for person in everyone:
            if not person.active:
                continue
            entry = departments.setdefault(person.department or "", {"managers": [], "people": []})
            entry["people"].append(person)
            if person.role == "manager":
                entry["managers"].append(person)
        return form_page(
            request,
            "departments.html",
            SAVED,
            error,
            departments=dict(sorted(departments.items())),
            everyone=[p for p in everyone if p.active],
        )

    @get("/departments")
    async def departments(self, request: Request) -> Template:
        return await self._department_page(request)

    @post("/departments", opt=covers("PATCH /api/v1/staff/{staff_id:uuid}"))
    async def move(self, request: Request) -> Template | Redirect:
        """Move a staff member to a department (a rep's members go to the handover queue)."""
        principal = staff(request, "staff:manage")
        values = await form(request)
        try:
            try:
                staff_id = UUID(str(values.get("staff_id", "")))
            except ValueError:
                raise InvalidInput("choose a staff member", field="staff_id") from None
            data = convert(
                {"department": values.get("department", "").strip() or None},
                staff_schemas.StaffUpdate,
            )
            await staff_changes.update_staff(
                staff_id,
                data,
                actor=principal,
                redis=request.app.state.redis,
                session_store=request.app.stores.get("sessions"),
            )
        except DomainError as exc:
            return await self._department_page(request, exc)
        return back("/console/departments?saved=moved")

    # --- API keys -----------------------------------------------------------------------

    async def _key_page(
        self,
        request: Request,
        error: DomainError | None = None,
        created: staff_schemas.ApiKeyCreated | None = None,
    ) -> Template:
        staff(request, "api_keys:manage")
        return form_page(
            request,
            "api_keys.html",
            SAVED,
            error,
            status=201 if created else 200,
            keys=await staff_service.list_api_keys(),
            scopes=sorted(API_KEY_SCOPES),
            created=created,
        )

    @get("/api-keys", opt=covers("GET /api/v1/api-keys"))
    async def api_keys(self, request: Request) -> Template:
        return await self._key_page(request)

    @post("/api-keys", opt=covers("POST /api/v1/api-keys"))
    async def create_key(self, request: Request) -> Template:
        principal = staff(request, "api_keys:manage")
        values = await form(request)
        scopes = values.get("scopes", [])
        try:
            data = convert(
                {
                    "name": values.get("name", "").strip(),
                    "scopes": scopes if isinstance(scopes, list) else [scopes],
                },
                staff_schemas.ApiKeyCreate,
            )
            created = await staff_service.create_api_key(data, created_by=principal.id)
        except DomainError as exc:
            return await self._key_page(request, exc)
        return await self._key_page(request, created=created)

    @post("/api-keys/{key_id:uuid}/revoke", opt=covers("DELETE /api/v1/api-keys/{key_id:uuid}"))
    async def revoke_key(self, request: Request, key_id: FromPath[UUID]) -> Redirect:
        staff(request, "api_keys:manage")
        await staff_service.revoke_api_key(key_id)
        return back("/console/api-keys?saved=revoked")

    # --- tiers --------------------------------------------------------------------------

    async def _tier_page(
        self,
        request: Request,
        error: DomainError | None = None,
        failed: str | None = None,
        values: dict | None = None,
    ) -> Template:
        staff(request, "tiers:manage")
        ladder = await tiers.list_tiers()
        return form_page(
            request,
            "tiers.html",
            SAVED,
            error,
            ladder=ladder,
            settings=await tiers.get_settings_(),
            failed=failed,  # the form (a tier's code, "new" or "settings") the error is about
            form=values or {},
        )

    @get("/tiers", opt=covers("GET /api/v1/tiers", "GET /api/v1/tier-settings"))
    async def tier_list(self, request: Request) -> Template:
        return await self._tier_page(request)

    @post("/tiers/{code:str}", opt=covers("PUT /api/v1/tiers/{code:str}"))
    async def put_tier(self, request: Request, code: FromPath[str]) -> Template | Redirect:
        """Change a tier (every field of the API's PUT), or create one (code "new")."""
        principal = staff(request, "tiers:manage")
        values = await form(request)
        try:
            if code == "new":
                code = str(values.get("code", "")).strip().lower()
                if not TIER_CODE.fullmatch(code) or code == "new":
                    raise InvalidInput(N_("letters, digits, - and _ only (1-32)"), field="code")
                if any(t.code == code for t in await tiers.list_tiers()):
                    raise InvalidInput(N_("a tier with this code exists"), field="code")
            elif not any(t.code == code for t in await tiers.list_tiers()):
                raise NotFound(N_("no such tier"))
            await tiers.put_tier(
                code, convert(tier_body(values), tier_schemas.TierUpdate), principal
            )
        except DomainError as exc:
            failed = "new" if request.path_params["code"] == "new" else code
            return await self._tier_page(request, exc, failed, values)
        return back(f"/console/tiers?saved=tier#tier-{code}")

    @post("/tier-settings", opt=covers("PUT /api/v1/tier-settings"))
    async def put_tier_settings(self, request: Request) -> Template | Redirect:
        principal = staff(request, "tiers:manage")
        values = await form(request)
        try:
            data = convert(
                {
                    "basis": values.get("basis", ""),
                    "window_months": values.get("window_months", ""),
                    "grace_days": values.get("grace_days", ""),
                },
                tier_schemas.TierSettingsUpdate,
            )
            await tiers.put_settings(data, principal)
        except DomainError as exc:
            return await self._tier_page(request, exc, "settings", values)
        return back("/console/tiers?saved=tier_settings")

    # --- earning rules ------------------------------------------------------------------

    async def _rules_page(
        self, request: Request, error: DomainError | None = None, values: dict | None = None
    ) -> Template:
        staff(request, "rules:manage")
        return form_page(
            request,
            "earning.html",
            SAVED,
            error,
            rules=await points.get_rules(fresh=True),
            form=values or {},
        )

    @get("/earning", opt=covers("GET /api/v1/points/rules"))
    async def rules(self, request: Request) -> Template:
        return await self._rules_page(request)

    @post("/earning", opt=covers("PUT /api/v1/points/rules"))
    async def put_rules(self, request: Request) -> Template | Redirect:
        principal = staff(request, "rules:manage")
        values = await form(request)
        try:
            multipliers = {}
            for line in str(values.get("category_multipliers", "")).splitlines():
                if line.strip():
                    category, _sep, factor = line.partition("=")
                    multipliers[category.strip()] = _decimal(factor, "category_multipliers")
            points_per_unit = _decimal(values.get("points_per_unit", ""), "points_per_unit")
            if not Decimal(0) < points_per_unit <= Decimal(1000):
                raise InvalidInput("must be above 0 and at most 1000", field="points_per_unit")
            body = {
                "points_per_unit": points_per_unit,
                "category_multipliers": multipliers,
                "pending_days": values.get("pending_days", ""),
                "expiry_months": values.get("expiry_months", ""),
            }
            await points.update_rules(convert(body, point_schemas.EarningRulesUpdate), principal)
        except DomainError as exc:
            return await self._rules_page(request, exc, values)
        return back("/console/earning?saved=rules")


def _builtins(value: Any) -> Any:
    import msgspec

    return msgspec.to_builtins(value)
