"""One training process per run directory.

`embodied train` claims its run directory before it writes anything: it takes an exclusive OS
lock (`flock`) on `<run>/.train.lock` and records its pid there for the message a second
process prints. Two processes started at the same instant on one `--run-dir` race for the
lock; exactly one wins and the other refuses in one line. The kernel drops the lock when its
process ends, however it ends (Ctrl-C, a crash, kill -9), so a lock file left behind never
blocks `--resume`: only a live process holds the lock, whatever the file says.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

import rundir


class RunDirInUse(ValueError):
    """The run directory is being written by another process, or a fresh run found it full."""


def _holder(lock: Path, wait_s: float = 1.0) -> str:
    """Who holds the lock, as the holder wrote it. The holder writes its record just after it
    takes the lock, so a loser of a simultaneous start may look before it is there: look again
    for up to `wait_s` before naming no one."""
    deadline = time.monotonic() + wait_s
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            info = json.loads(lock.read_text())
            return f"process {int(info['pid'])} (started {info.get('started', '?')})"
        if time.monotonic() >= deadline:
            return "another process"
        time.sleep(0.02)


class RunClaim:
    """The held claim on a run directory; `release()` (or leaving the `with` block) ends it."""

    def __init__(self, run_dir: Path, fd: int):
        self.run_dir = run_dir
        self.lock = run_dir / rundir.LOCK_FILE
        self._fd: int | None = fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        # unlink while still holding the lock, so nobody can lock the old file after us
        with contextlib.suppress(OSError):
            self.lock.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_run_dir(run_dir: str | os.PathLike[str], fresh: bool) -> RunClaim:
    """Claim `run_dir` for this process, before anything is written into it.

    `fresh`: a new run; the directory is created and must hold nothing but the lock file.
    Otherwise (resume) it must exist. Raises `RunDirInUse` (one line) when another live
    process holds the claim, or when a fresh run finds files in the directory.
    """
    run_dir = Path(run_dir)
    if fresh:
        run_dir.mkdir(parents=True, exist_ok=True)
    elif not run_dir.is_dir():
        raise RunDirInUse(f"run directory {run_dir} does not exist; start a new run with "
                          "embodied train --run-dir instead")
    lock = run_dir / rundir.LOCK_FILE
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirInUse(
                f"run directory {run_dir} is in use by {_holder(lock)}, which is training into "
                "it; wait for it to finish (or stop it), or pick another --run-dir") from None
        # The holder before us may have removed the file between our open and our lock: then
        # we hold a lock on a file nobody else can see. Retry on the file at the path.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    claim = RunClaim(run_dir, fd)
    record = json.dumps({"pid": os.getpid(), "started": rundir.utc_now()}) + "\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode(), 0)
    if fresh:
        others = sorted(p.name for p in run_dir.iterdir() if p.name != rundir.LOCK_FILE)
        if others:
            claim.release()
            raise RunDirInUse(f"run directory {run_dir} already exists and is not empty; pick "
                              f"another --run-dir or continue it with --resume {run_dir}")
    return claim
