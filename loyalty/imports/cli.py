"""`loyalty import members FILE.csv` and `loyalty import purchases FILE.csv`: run an import
in this process with a progress bar, then write the error and conflict files beside it."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import click

from loyalty.auth import Principal
from loyalty.infrastructure.commands import run_with_db

CLI = Principal(kind="cli", id=UUID(int=0), label="cli", role=None)


def _run(kind: str, file: Path, chunk_rows: int, report_dir: Path | None) -> None:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from loyalty.errors import DomainError
    from loyalty.imports import schemas, service
    from loyalty.infrastructure.runtime import start_services

    path = file.resolve()
    services = start_services()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:>9,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )

    async def go() -> tuple[schemas.Import, str, str]:
        created = await service.create_import(path, file.name, CLI, kind=kind)
        task = progress.add_task(f"{kind} {file.name}", total=created.bytes_total, rows=0)

        def show(state: schemas.Import) -> None:
            progress.update(task, completed=state.bytes_done, rows=state.rows_read)

        with progress:
            result = await service.run_import(created.id, chunk_rows=chunk_rows, progress=show)
        return result, await service.errors_csv(result.id), await service.conflicts_csv(result.id)

    try:
        try:
            result, errors, conflicts = run_with_db(go)
        except DomainError as exc:
            raise click.ClickException(
                f"{exc.field}: {exc.detail}" if exc.field else exc.detail
            ) from None
    finally:
        services.stop()
    folder = report_dir or file.resolve().parent
    click.echo(
        f"import {result.id} {result.status}: {result.rows_read} rows read, "
        f"{result.created} created, {result.merged} merged, {result.skipped} skipped, "
        f"{result.errors} errors, {result.conflicts} conflicts, "
        f"{result.points_entries} points entries"
    )
    for name, text, count in (
        ("errors", errors, result.errors),
        ("conflicts", conflicts, result.conflicts),
    ):
        if count:
            path = folder / f"{file.stem}.{name}.csv"
            path.write_text(text, encoding="utf-8")
            click.echo(f"{name}: {path}")


@click.group("import")
def import_group() -> None:
    """Import members or purchases from CSV files (see the README's template)."""


_chunk = click.option(
    "--chunk-rows", type=click.IntRange(min=1), default=5000, help="Rows per transaction."
)
_reports = click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write FILE.errors.csv and FILE.conflicts.csv (default: beside the file).",
)
_file = click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@import_group.command("members")
@_file
@_chunk
@_reports
def import_members(file: Path, chunk_rows: int, report_dir: Path | None) -> None:
    """Import members: duplicates merged, opening points posted; re-running changes nothing."""
    _run("members", file, chunk_rows, report_dir)


@import_group.command("purchases")
@_file
@_reports
def import_purchases(file: Path, report_dir: Path | None) -> None:
    """Import historic purchases, posted exactly once by external_id, 1,000 at a time."""
    _run("purchases", file, 1000, report_dir)
