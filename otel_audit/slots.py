"""Worker slots: several processes configured with one folder (gunicorn or uvicorn workers, a forked
child) each take a folder of their own inside it, so that none has to be told apart in the config.

    base/            slot 0, the first process to lock it
    base/worker-1/   the next live process, and so on up to MAX_SLOTS

A slot is held with an exclusive flock on its `lock` file for the lifetime of the process; a
process that is gone has released it, so the next one to start takes it over (and with it the
chain state or the spool backlog left there).
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO, Any

from otel_audit.errors import ConfigError
from otel_audit.filemodes import make_dirs, open_lock

_log = logging.getLogger(__name__)
MAX_SLOTS = 256
LOCK_FILE = "lock"


def slot_dir(base: Path, k: int) -> Path:
    return base if k == 0 else base / f"worker-{k}"


def claim_slot(base: str | os.PathLike[str], what: str) -> tuple[Path, IO[Any], int, bool]:
    """Lock `base`, or the first free `base/worker-<k>` when live processes hold the ones before.

    Returns (the slot's folder, its open lock file with the flock held, k, whether the slot had been
    used before: its lock file existed). `what` names the setting in errors ("state_dir")."""
    base = Path(base)
    for k in range(MAX_SLOTS + 1):
        d = slot_dir(base, k)
        lock = d / LOCK_FILE
        try:
            make_dirs(d)  # 0700 if made here; a folder that exists keeps its mode (check-config warns)
            existed = lock.exists()
            fh = open_lock(lock)  # held for the lifetime of the process
        except OSError as exc:
            raise ConfigError(f"{what} {d}: cannot create or open: {exc.strerror}") from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue  # held by a live process: try the next slot
        except OSError as exc:
            fh.close()
            raise ConfigError(f"{what} {d}: cannot lock {lock}: {exc.strerror}") from exc
        if k:
            _log.info("%s %s is held by another process; this process (pid %d) uses slot %s", what, base,
                      os.getpid(), d)
        return d, fh, k, existed
    raise ConfigError(f"{what} {base}: it and all {MAX_SLOTS} worker slots (worker-1 ... worker-{MAX_SLOTS}) are "
                      "held by live processes; give this process a folder of its own")


def slots(base: Path) -> list[Path]:
    """The slot folders that exist under `base` (base itself first), in slot order."""
    out = [base] if base.is_dir() else []
    found = []
    for p in base.glob("worker-*"):
        n = p.name.split("-", 1)[1]
        if p.is_dir() and n.isdigit():
            found.append((int(n), p))
    return out + [p for _, p in sorted(found)]


__all__ = ["LOCK_FILE", "MAX_SLOTS", "claim_slot", "slot_dir", "slots"]
