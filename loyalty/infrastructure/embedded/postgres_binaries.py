"""Finding, probing and initialising PostgreSQL's programs: the `pgserver` wheel first, then
system PostgreSQL (Debian's /usr/lib/postgresql/*/bin) as the fallback."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from loyalty.infrastructure.embedded.processes import EmbeddedServiceError, run, short

PG_SUPERUSER = "postgres"
PG_SYSTEM_USER = "postgres"


def pgserver_bin_dir() -> Path | None:
    # find_spec does not import pgserver: importing it creates lock files in the runtime dir.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def default_postgres_bin_dirs() -> list[Path]:
    """Candidate PostgreSQL bin folders, preferred first."""
    candidates: list[Path] = []
    pgserver_bin = pgserver_bin_dir()
    if pgserver_bin is not None:
        candidates.append(pgserver_bin)
    on_path = shutil.which("pg_ctl")
    if on_path:
        # Resolve: /usr/local/bin/pg_ctl is often a lone symlink without initdb next to it.
        candidates.append(Path(on_path).resolve().parent)
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    candidates.extend(debian)
    unique: list[Path] = []
    for c in candidates:
        if c not in unique:
            unique.append(c)
    return unique


def postgres_system_user() -> pwd.struct_passwd | None:
    """The user servers run as: None (ourselves) unless we are root, which postgres refuses."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise EmbeddedServiceError(
            f"running as root and could not create the {PG_SYSTEM_USER!r} system user "
            f"PostgreSQL must run as: {short(detail)}"
        ) from exc
    return pwd.getpwnam(PG_SYSTEM_USER)


def make_traversable(path: Path) -> None:
    """Give others +x on every parent so the postgres user can reach path (root only)."""
    for parent in reversed(path.parents):
        with contextlib.suppress(OSError):
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(parent, stat.S_IMODE(mode) | stat.S_IXOTH)


def clean_env(bin_dir: Path | None, user: pwd.struct_passwd | None) -> dict[str, str]:
    # PG* variables (PGPORT, PGHOST, PGDATA...) would silently redirect our commands.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    path = env.get("PATH", os.defpath)
    if bin_dir is not None:
        path = f"{bin_dir}{os.pathsep}{path}"
    env["PATH"] = path
    if user is not None:
        env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return env


@dataclass
class Candidate:
    bin_dir: Path
    version: str  # e.g. "16.2"
    major: str  # e.g. "16"


def probe(bin_dir: Path, user: pwd.struct_passwd | None, *, cwd: Path) -> Candidate | str:
    """The PostgreSQL in bin_dir and its version, or why it cannot be used."""
    if not bin_dir.is_dir():
        return "no such directory"
    missing = [
        n for n in ("postgres", "initdb", "pg_ctl", "psql") if not os.access(bin_dir / n, os.X_OK)
    ]
    if missing:
        return f"missing {', '.join(missing)}"
    if user is not None:
        make_traversable(bin_dir)
    env = clean_env(bin_dir, user)
    try:
        proc = run(
            [str(bin_dir / "postgres"), "--version"],
            user=user,
            env=env,
            cwd=cwd,
            timeout=20,
        )
    except OSError as exc:
        return f"postgres will not run: {exc}"
    match = re.search(r"PostgreSQL\)?\s+(\d+)(?:\.(\d+))?", proc.stdout)
    if proc.returncode != 0 or match is None:
        return f"postgres will not run: {short(proc.stderr or proc.stdout)}"
    major = match.group(1)
    version = major + (f".{match.group(2)}" if match.group(2) else "")
    return Candidate(bin_dir, version, major)


def initdb(
    cand: Candidate,
    env: dict[str, str],
    user: pwd.struct_passwd | None,
    data_dir: Path,
    pgdata: Path,
) -> str | None:
    """Create the cluster in pgdata; None on success, else why it failed."""
    # initdb into a side folder then rename: a pgdata that exists is always complete,
    # even if a previous initdb was killed half-way.
    tmp = data_dir / "pgdata.initdb"
    errors: list[str] = []
    # C.UTF-8 gives Unicode-aware lower()/upper() without needing generated locales;
    # not every libc has it, so fall back to plain C.
    for locale in ("C.UTF-8", "C"):
        shutil.rmtree(tmp, ignore_errors=True)
        proc = run(
            [
                str(cand.bin_dir / "initdb"),
                "-D",
                str(tmp),
                "-U",
                PG_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                f"--locale={locale}",
            ],
            user=user,
            env=env,
            cwd=data_dir,
            timeout=120,
        )
        if proc.returncode == 0:
            try:
                tmp.rename(pgdata)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                return f"cannot put the new cluster in place: {exc}"
            return None
        errors.append(short(proc.stderr or proc.stdout, 300))
    shutil.rmtree(tmp, ignore_errors=True)
    return f"initdb failed: {' / '.join(errors)}"
