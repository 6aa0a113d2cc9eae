"""Shapes of the member's own API (`/api/v1/me`) and of the portal's forms."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from loyalty.infrastructure.schemas import Input
from loyalty.members.schemas import Channel

Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=254)]
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=12)]


class SignUpCreate(Input):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    email: Annotated[str, msgspec.Meta(max_length=254)] = ""
    phone: Annotated[str, msgspec.Meta(max_length=30)] = ""
    referral_code: Annotated[str, msgspec.Meta(max_length=20)] = ""
    consents: Annotated[list[Channel], msgspec.Meta(max_length=6)] = []


class SignUpStarted(msgspec.Struct):
    sign_up_token: str
    sent_to: str


class SignUpConfirmationCreate(Input):
    sign_up_token: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    code: Code


class SignInCodeCreate(Input):
    identifier: Identifier  # phone or email


class CodeSignInCreate(Input):
    identifier: Identifier
    code: Code


class PasswordSignInCreate(Input):
    identifier: Identifier
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Token(msgspec.Struct):
    token: str
    member_id: str
    expires_in: int  # seconds


class PasswordUpdate(Input):
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class ContactChangeCreate(Input):
    field: Literal["email", "phone"]
    value: Identifier


class ContactChangeConfirmationCreate(Input):
    code: Code


class ServiceRequestCreate(Input):
    kind: Literal["request", "complaint"]
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=5000)]


class ClosureRequestCreate(Input):
    reason: Annotated[str, msgspec.Meta(max_length=2000)] = ""


class Accepted(msgspec.Struct):
    status: str
    detail: str


class Message(msgspec.Struct):
    id: str
    kind: str
    title: str
    body: str
    created_at: str
