"""The run lock: one `peftbench run` writes a results file at a time.

An exclusive fcntl lock beside the database, holding the pid and host of the run that
took it, so a second run says at once who is writing instead of waiting on the file.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path


class StoreBusy(RuntimeError):
    """Another process holds the database or the run lock."""


def describe_holder(text: str) -> str:
    """The run lock's "PID HOST" as words; older locks hold only the pid."""
    pid, _, host = text.strip().partition(" ")
    if not pid:
        return "pid unknown"
    return f"pid {pid} on {host}" if host else f"pid {pid}"


class RunLock:
    """An exclusive lock beside the database for the length of a run, holding the pid and
    host of the run that took it (so a second run says at once who is writing).

    Re-entrant within one process: the CLI takes it before planning, and `run_plan`,
    which other callers use alone, takes it again (flock would refuse a second open file)."""

    _held: dict[str, int] = {}  # lock path -> depth, in this process

    def __init__(self, db_path: Path):
        self.path = Path(str(db_path) + ".runlock")
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        key = str(self.path.resolve())
        if key in RunLock._held:
            RunLock._held[key] += 1
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._take(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}".encode())
        self._fd = fd
        RunLock._held[key] = 1
        return self

    def _take(self, fd: int) -> None:
        """flock `fd`, or close it and raise StoreBusy naming the run that holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.read(fd, 256).decode(errors="replace")
            os.close(fd)
            raise StoreBusy(
                f"another `peftbench run` ({describe_holder(holder)}) is writing "
                f"{str(self.path)[:-8]}; wait for it to finish, or give this run its own --db"
            ) from exc

    def refuse_if_held(self) -> None:
        """Raise StoreBusy at once if another run holds the lock; creates nothing (a run
        that stops on a spec error must leave no file behind), so it only peeks."""
        if str(self.path.resolve()) in RunLock._held or not self.path.exists():
            return
        fd = os.open(self.path, os.O_RDWR)
        self._take(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __exit__(self, *exc) -> None:
        key = str(self.path.resolve())
        RunLock._held[key] = RunLock._held.get(key, 1) - 1
        if RunLock._held[key] > 0:
            return
        del RunLock._held[key]
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
