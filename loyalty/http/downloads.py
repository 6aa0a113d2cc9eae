"""Answers a browser saves as a file: CSV reports and exports."""

from __future__ import annotations

from litestar.response import Response

CSV = "text/csv; charset=utf-8"


def attachment(filename: str) -> dict[str, str]:
    """The header that makes the answer a download named `filename`."""
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def csv_download(text: str, filename: str) -> Response[str]:
    """CSV text, downloaded as `filename`."""
    return Response(text, media_type=CSV, headers=attachment(filename))
