"""Member archive shapes: person and organisation, contact preferences and consent."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from loyalty.infrastructure.schemas import Input

Language = Literal["en", "zh"]
Channel = Literal["email", "sms", "phone", "wechat", "post", "portal"]
RegistrationChannel = Literal["staff", "portal", "integration"]
Text100 = Annotated[str, msgspec.Meta(max_length=100)]
Text200 = Annotated[str, msgspec.Meta(max_length=200)]
Text2000 = Annotated[str, msgspec.Meta(max_length=2000)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]


Strength = Annotated[int, msgspec.Meta(ge=1, le=5)]


class Address(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    line1: Text200 = ""
    line2: Text200 = ""
    city: Text100 = ""
    region: Text100 = ""
    postcode: Annotated[str, msgspec.Meta(max_length=20)] = ""
    country: Annotated[str, msgspec.Meta(max_length=2)] = ""


class Child(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Text100 = ""
    age: Annotated[int, msgspec.Meta(ge=0, le=40)] | None = None
    school: Text200 = ""


class Household(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    spouse: Text100 = ""
    children: Annotated[list[Child], msgspec.Meta(max_length=20)] = []
    elderly_parents: Annotated[list[Text200], msgspec.Meta(max_length=10)] = []


class KeyPerson(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    name: Text100
    role: Text100 = ""
    phone: Annotated[str, msgspec.Meta(max_length=30)] = ""
    notes: Text2000 = ""


class Organisation(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """An organisation's archive, in the sections the sales team works with."""

    company_profile: Text2000 = ""
    operations: Text2000 = ""
    owner: Text2000 = ""
    settlement_habits: Text2000 = ""
    key_staff: Annotated[list[KeyPerson], msgspec.Meta(max_length=50)] = []


class Consent(msgspec.Struct, forbid_unknown_fields=True):
    channel: Channel
    granted: bool
    at: datetime | None = None  # when; defaults to the time it was recorded
    method: Text200 = ""  # how, e.g. "portal sign-up form", "signed paper form"


class ContactPreferences(msgspec.Struct, forbid_unknown_fields=True):
    channels: Annotated[list[Channel], msgspec.Meta(max_length=6)] = []  # most preferred first
    consents: Annotated[list[Consent], msgspec.Meta(max_length=12)] = []
    # The language the member's messages are written in (offers, tier news, expiry warnings,
    # email and text messages). Unset: the request's Accept-Language, else the default.
    # Leaving it out of an update keeps the one stored.
    language: Language | UnsetType = UNSET


class MemberCreate(Input):
    name: Name
    kind: Literal["person", "organisation"] = "person"
    phone: Annotated[str, msgspec.Meta(max_length=30)] | None = None
    email: Annotated[str, msgspec.Meta(max_length=254)] | None = None
    gender: Literal["female", "male", "other", "undisclosed"] | None = None
    birthday: date | None = None
    address: Address | None = None
    household: Household | None = None
    hobbies: Annotated[list[Text100], msgspec.Meta(max_length=30)] = []
    consumption_preferences: Annotated[list[Text200], msgspec.Meta(max_length=30)] = []
    notes: Annotated[str, msgspec.Meta(max_length=10000)] = ""
    tags: Annotated[list[Tag], msgspec.Meta(max_length=30)] = []
    organisation: Organisation | None = None
    contact_preferences: ContactPreferences | None = None
    occupation: Text200 = ""
    source: Text100 = ""
    relationship_strength: Strength | None = None
    # A friend's referral code: the referral pays both sides at the first qualifying
    # purchase, and the new member is served by the friend's rep.
    referral_code: Annotated[str, msgspec.Meta(max_length=20)] | None = None


class MemberUpdate(Input):
    """Only the fields sent are changed; send null to clear an optional field."""

    name: Name | UnsetType = UNSET
    phone: Annotated[str, msgspec.Meta(max_length=30)] | UnsetType | None = UNSET
    email: Annotated[str, msgspec.Meta(max_length=254)] | UnsetType | None = UNSET
    gender: Literal["female", "male", "other", "undisclosed"] | UnsetType | None = UNSET
    birthday: date | UnsetType | None = UNSET
    address: Address | UnsetType | None = UNSET
    household: Household | UnsetType | None = UNSET
    hobbies: Annotated[list[Text100], msgspec.Meta(max_length=30)] | UnsetType = UNSET
    consumption_preferences: Annotated[list[Text200], msgspec.Meta(max_length=30)] | UnsetType = (
        UNSET
    )
    notes: Annotated[str, msgspec.Meta(max_length=10000)] | UnsetType = UNSET
    tags: Annotated[list[Tag], msgspec.Meta(max_length=30)] | UnsetType = UNSET
    organisation: Organisation | UnsetType | None = UNSET
    contact_preferences: ContactPreferences | UnsetType = UNSET
    occupation: Text200 | UnsetType = UNSET
    source: Text100 | UnsetType = UNSET
    relationship_strength: Strength | UnsetType | None = UNSET


class Registration(msgspec.Struct):
    at: datetime
    channel: str
    by: str


class Member(msgspec.Struct):
    id: UUID
    number: str
    kind: str
    status: str
    name: str
    phone: str | None
    email: str | None
    gender: str | None
    birthday: date | None
    address: Address | None
    household: Household | None
    hobbies: list[str]
    consumption_preferences: list[str]
    notes: str
    tags: list[str]
    organisation: Organisation | None
    contact_preferences: ContactPreferences
    registration: Registration
    assigned_rep_id: UUID | None
    merged_into: UUID | None
    updated_at: datetime
    occupation: str = ""
    source: str = ""
    relationship_strength: int | None = None


class MemberSummary(msgspec.Struct):
    id: UUID
    number: str
    name: str
    kind: str
    phone: str | None
    email: str | None
    status: str


class MemberList(msgspec.Struct):
    items: list[MemberSummary]
    limit: int
    offset: int
    has_more: bool


class MergeCreate(Input):
    duplicate_id: UUID
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class MergeResult(msgspec.Struct):
    survivor: Member
    merged_member_id: UUID
    points_moved: int
    purchases_moved: int


class Change(msgspec.Struct):
    action: str
    actor: str
    at: datetime
    changes: dict


class ClosureRequest(msgspec.Struct):
    id: UUID
    member_id: UUID
    number: str
    channel: str
    reason: str
    status: str  # pending | approved (the member was erased) | rejected
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
