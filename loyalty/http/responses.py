"""Answers the API gives in more than one place: CSV downloads, and the 201-or-200 of a POST
that may be sent again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeVar

from litestar.response import Response, Stream
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

CSV = "text/csv; charset=utf-8"

T = TypeVar("T")


def attachment(filename: str) -> dict[str, str]:
    """The header that makes the answer a download named `filename`."""
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def csv_download(text: str, filename: str) -> Response[str]:
    """CSV text, downloaded as `filename`."""
    return Response(text, media_type=CSV, headers=attachment(filename))


def csv_stream(lines: AsyncIterator[str], filename: str) -> Stream:
    """CSV produced while it is sent (large exports), downloaded as `filename`."""
    return Stream(lines, media_type=CSV, headers=attachment(filename))


def created_or_replayed(result: T, created: bool) -> Response[T]:
    """An idempotent POST's answer: 201 when this call made it, 200 with the original when
    the same request was sent before (documented by `loyalty.http.openapi.replayed`)."""
    return Response(result, status_code=HTTP_201_CREATED if created else HTTP_200_OK)
