"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A crash, a full disk or an exception half-way through an export must never leave a truncated
PSD where the user's file used to be. The temporary file is named after the target and the
writing process (``.NAME.PID.RANDOM.part``): an exception removes it at once, and one stranded by
a killed process is removed by the next write to the same target, once that process is gone.
The result keeps the mode of the file it replaces (a private file stays private); a new file
gets the mode the user's umask gives, as ``open()`` would.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "remove_stranded_parts"]

STALE_SECONDS = 24 * 3600
"""A temporary file this old is stranded even if its PID was reused by another process."""


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stranded_parts(target: Path) -> int:
    """Delete temporary files of earlier writes to ``target`` whose writer has died (or that
    are over a day old); returns how many were removed."""
    prefix, removed = f".{target.name}.", 0
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return 0
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".part")):
            continue
        pid_text = entry.name[len(prefix):].split(".", 1)[0]
        try:
            info = entry.stat(follow_symlinks=False)
            old = time.time() - info.st_mtime > STALE_SECONDS
            if not stat.S_ISREG(info.st_mode):
                continue
            if old or not (pid_text.isdigit() and _process_alive(int(pid_text))):
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``target``.

    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stranded_parts(target)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".part",
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
