"""Request and response shapes for staff, sign-in, tokens and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from loyalty.auth import API_KEY_SCOPES, ROLES
from loyalty.infrastructure.schemas import Input

# Checked by the service (422 names the field); the schema lists the allowed values.
Role = Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(ROLES)})]
Scope = Annotated[str, msgspec.Meta(extra_json_schema={"enum": sorted(API_KEY_SCOPES)})]

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Department = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


Level = Literal["junior", "regular", "senior"]  # a rep's level decides which tiers they serve


class Staff(msgspec.Struct):
    id: UUID
    username: str
    display_name: str
    role: str
    department: str | None
    active: bool
    created_at: datetime
    level: str = "regular"


class StaffCreate(Input):
    username: Username
    role: Role
    password: Password | None = None
    display_name: DisplayName | None = None
    department: Department | None = None
    level: Level = "regular"


class StaffCreated(msgspec.Struct):
    staff: Staff
    password: str | None = None  # only when generated: shown once


class StaffUpdate(Input):
    display_name: DisplayName | UnsetType = UNSET
    role: Role | UnsetType = UNSET
    department: Department | UnsetType | None = UNSET
    active: bool | UnsetType = UNSET
    password: Password | UnsetType = UNSET
    level: Level | UnsetType = UNSET


class TokenCreate(Input):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Password


class Token(msgspec.Struct):
    token: str
    token_type: str
    expires_at: datetime
    staff: Staff


class Me(msgspec.Struct):
    kind: str
    id: UUID
    label: str
    role: str | None
    department: str | None
    permissions: list[str]


class ApiKeyCreate(Input):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=20)]


class ApiKey(msgspec.Struct):
    id: UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(msgspec.Struct):
    api_key: ApiKey
    key: str  # shown once; only its hash is kept
