"""Staff API: sign-in tokens, staff users and integration API keys."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from loyalty.auth import CurrentPrincipal, authenticated, requires
from loyalty.http.middleware import client_address
from loyalty.http.openapi import problems
from loyalty.settings import Settings
from loyalty.staff import schemas, service
from loyalty.workflows import staff_changes


class AuthController(Controller):
    path = "/api/v1/auth"
    tags = ["auth"]

    @post(
        "/tokens",
        status_code=HTTP_201_CREATED,
        summary="Sign in for API use",
        responses=problems(401, 429),  # a public path: its 401 is a refused sign-in
    )
    async def create_token(
        self,
        request: Request,
        data: JSONBody[schemas.TokenCreate],
        settings: NamedDependency[Settings],
    ) -> schemas.Token:
        """Exchange a staff username and password for a bearer token (valid for hours)."""
        staff = await service.authenticate(
            data.username,
            data.password,
            client=client_address(request),
            redis=request.app.state.redis,
            settings=settings,
        )
        return await service.issue_token(staff, settings=settings)

    @delete(
        "/tokens/current",
        summary="Sign out: revoke the token used for this call",
        guards=[authenticated],
    )
    async def revoke_current_token(self, request: Request) -> None:
        """Revoke the bearer token sent with this request; it stops working at once."""
        token = request.headers.get("authorization", "").partition(" ")[2].strip()
        await service.revoke_token(token)

    @get("/me", summary="Who am I", guards=[authenticated])
    async def me(self, principal: CurrentPrincipal) -> schemas.Me:
        """The caller's identity, role and permissions (staff) or scopes (API key)."""
        return schemas.Me(
            kind=principal.kind,
            id=principal.id,
            label=principal.label,
            role=principal.role,
            department=principal.department,
            permissions=sorted(principal.permissions),
        )


class StaffController(Controller):
    path = "/api/v1/staff"
    tags = ["staff"]

    @get(
        "/",
        summary="List staff users",
        guards=[requires("staff:read")],
    )
    async def list_staff(self, principal: CurrentPrincipal) -> list[schemas.Staff]:
        """All staff users; managers see their own department only."""
        department = principal.department_limit
        return await service.list_staff(department=department)

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create a staff user",
        responses=problems(409, 422),
        guards=[requires("staff:manage")],
    )
    async def create_staff(self, data: JSONBody[schemas.StaffCreate]) -> schemas.StaffCreated:
        """Create a staff user. Leave out `password` to have one generated and returned once."""
        return await service.create_staff(data)

    @patch(
        "/{staff_id:uuid}",
        summary="Change or deactivate a staff user",
        responses=problems(422),
        guards=[requires("staff:manage")],
    )
    async def update_staff(
        self,
        request: Request,
        principal: CurrentPrincipal,
        staff_id: FromPath[UUID],
        data: JSONBody[schemas.StaffUpdate],
    ) -> schemas.Staff:
        """Partial update; `active: false` deactivates the user and ends all their sessions and tokens."""
        return await staff_changes.update_staff(
            staff_id,
            data,
            actor=principal,
            redis=request.app.state.redis,
            session_store=request.app.stores.get("sessions"),
        )


class ApiKeyController(Controller):
    path = "/api/v1/api-keys"
    tags = ["api keys"]
    guards = [requires("api_keys:manage")]

    @get("/", summary="List integration API keys")
    async def list_keys(self) -> list[schemas.ApiKey]:
        """Every key with its scopes and when it was last used; the secret itself is never shown again."""
        return await service.list_api_keys()

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        summary="Create an integration API key",
        responses=problems(422),
    )
    async def create_key(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.ApiKeyCreate]
    ) -> schemas.ApiKeyCreated:
        """Create a scoped key for a POS or shop; the key is in this response only."""
        return await service.create_api_key(
            data, created_by=principal.id if principal.is_staff else None
        )

    @delete(
        "/{key_id:uuid}",
        status_code=HTTP_200_OK,
        summary="Revoke an integration API key",
    )
    async def revoke_key(self, key_id: FromPath[UUID]) -> schemas.ApiKey:
        """Revoke a key; calls made with it are refused from now on."""
        return await service.revoke_api_key(key_id)
