"""Imports: the API (upload, progress, error and conflict files) and the console's upload
page. Uploads are saved to the data folder and run by the worker (arq job `run_import`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

from litestar import Controller, Request, Router, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect, Response, Template

from loyalty.auth import CurrentPrincipal, Principal, requires
from loyalty.console.common import EXCEPTION_HANDLERS, back, page, staff
from loyalty.errors import DomainError, InvalidInput
from loyalty.http.openapi import problems
from loyalty.http.responses import CSV, csv_download
from loyalty.http.routes import covers
from loyalty.imports import records, schemas, service

MAX_UPLOAD = 2 * 1024**3  # 2 GiB
TEMPLATE = Path(__file__).with_name("template.csv")


async def _save_upload(upload: Any) -> tuple[Path, str]:
    """Write the uploaded file to the data folder in blocks; (path, original file name)."""
    if upload is None or not getattr(upload, "filename", None):
        raise InvalidInput("choose a CSV file to upload", field="file")
    path = service.upload_dir() / f"{uuid4()}.csv"
    with path.open("wb") as out:
        while block := await upload.read(1 << 20):
            out.write(block)
    if path.stat().st_size == 0:
        path.unlink()
        raise InvalidInput("the file is empty", field="file")
    return path, Path(upload.filename).name


async def start_upload(request: Request, upload: Any, kind: str, principal: Principal):
    path, name = await _save_upload(upload)
    created = await service.create_import(path, name, principal, kind=kind)
    try:
        await request.app.state.redis.enqueue_job(
            "run_import", str(created.id), _job_id=f"import:{created.id}:{uuid4()}"
        )
    except Exception:
        await service.mark_not_queued(created.id)
        raise  # answered 503 when Redis is down
    return created


async def _errors_file(import_id: UUID) -> Response[str]:
    """The rows of an import that were not imported, as a CSV download."""
    return csv_download(await service.errors_csv(import_id), f"import-{import_id}-errors.csv")


async def _conflicts_file(import_id: UUID) -> Response[str]:
    """The values an import's duplicates offered that the survivors did not take, as CSV."""
    return csv_download(await service.conflicts_csv(import_id), f"import-{import_id}-conflicts.csv")


class ImportController(Controller):
    path = "/api/v1/imports"
    tags = ["imports"]
    guards = [requires("imports:run")]

    @post(
        "/",
        summary="Upload a file to import",
        responses=problems(422),
        request_max_body_size=MAX_UPLOAD,
        status_code=202,
    )
    async def upload(
        self,
        request: Request,
        principal: CurrentPrincipal,
        data: Annotated[dict[str, Any], Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> schemas.Import:
        """Multipart form with `file` (CSV, see the README's template) and optional `kind`
        (`members`, the default, or `purchases`). The import runs in the background: poll
        `GET /api/v1/imports/{id}`. Uploading the same content while an earlier import of it
        is unfinished resumes that import."""
        kind = str(data.get("kind") or "members")
        upload = data.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("choose a CSV file to upload", field="file")
        return await start_upload(request, upload, kind, principal)

    @get("/", summary="Recent imports")
    async def recent(self) -> schemas.ImportList:
        """The 20 newest imports with their progress and counts."""
        return schemas.ImportList(items=await records.recent_imports())

    @get("/{import_id:uuid}", summary="An import's progress")
    async def progress(self, import_id: FromPath[UUID]) -> schemas.Import:
        """Status, progress (0 to 1 by bytes read) and counts: created, merged, skipped,
        errors, conflicts and opening-points entries."""
        return await service.get_import(import_id)

    @get(
        "/{import_id:uuid}/errors.csv",
        summary="Rows that were not imported",
        media_type=CSV,
    )
    async def errors(self, import_id: FromPath[UUID]) -> Response:
        """CSV: row (line number in the file, the header is line 1), column, value, reason."""
        return await _errors_file(import_id)

    @get(
        "/{import_id:uuid}/conflicts.csv",
        summary="Values a duplicate offered that the survivor did not take",
        media_type=CSV,
    )
    async def conflicts(self, import_id: FromPath[UUID]) -> Response:
        """CSV: row, member_number (the survivor), field, kept, offered."""
        return await _conflicts_file(import_id)


class ImportPages(Controller):
    path = "/imports"

    @get("/", opt=covers("GET /api/v1/imports"))
    async def list_page(self, request: Request) -> Template:
        staff(request, "imports:run")
        return page(request, "imports.html", imports=await records.recent_imports())

    @post("/", request_max_body_size=MAX_UPLOAD, opt=covers("POST /api/v1/imports"))
    async def upload(self, request: Request) -> Template | Redirect:
        principal = staff(request, "imports:run")
        data = await request.form()
        try:
            created = await start_upload(
                request, data.get("file"), str(data.get("kind") or "members"), principal
            )
        except DomainError as exc:
            return page(
                request,
                "imports.html",
                status=exc.status_code,
                imports=await records.recent_imports(),
                error=f"{exc.field}: {exc.detail}" if exc.field else exc.detail,
            )
        return back(f"/console/imports/{created.id}")

    @get("/template.csv")
    async def template(self, request: Request) -> Response:
        staff(request, "imports:run")
        return csv_download(TEMPLATE.read_text(encoding="utf-8"), "members-template.csv")

    @get("/{import_id:uuid}", opt=covers("GET /api/v1/imports/{import_id:uuid}"))
    async def detail(self, request: Request, import_id: FromPath[UUID]) -> Template:
        staff(request, "imports:run")
        current = await service.get_import(import_id)
        return page(
            request,
            "import.html",
            imp=current,
            running=current.status in ("queued", "running"),
            errors=(await service.error_rows(import_id))[:50],
            conflicts=(await service.conflict_rows(import_id))[:50],
        )

    @get(
        "/{import_id:uuid}/errors.csv",
        opt=covers("GET /api/v1/imports/{import_id:uuid}/errors.csv"),
    )
    async def errors(self, request: Request, import_id: FromPath[UUID]) -> Response:
        staff(request, "imports:run")
        return await _errors_file(import_id)

    @get(
        "/{import_id:uuid}/conflicts.csv",
        opt=covers("GET /api/v1/imports/{import_id:uuid}/conflicts.csv"),
    )
    async def conflicts(self, request: Request, import_id: FromPath[UUID]) -> Response:
        staff(request, "imports:run")
        return await _conflicts_file(import_id)


ImportConsole = Router(
    path="/console",
    route_handlers=[ImportPages],
    include_in_schema=False,
    exception_handlers=EXCEPTION_HANDLERS,
)
