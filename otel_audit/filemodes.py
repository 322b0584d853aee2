"""Files and folders the product makes are private: 0600 files, 0700 folders, whatever the umask.

Keys, chain state, the spool and the archives hold signing keys and pseudonymised audit data: no
other user of the machine has a reason to read them, and none may change them. A process's umask
can only take permission bits away, so a file is created with its mode and then `fchmod`-ed to it
exactly (a umask of 0o277 would otherwise leave a 0400 file its owner cannot rewrite, and 0o000
leaves nothing out); a folder is `mkdir`-ed with its mode and then `chmod`-ed.

What exists already is left as it is: a folder the user made (a `state_dir` of 0755) is never
tightened silently, and a file opened to append to keeps its mode. `otel-audit check-config` says
which of them others can read or write (`loose`), and how to fix it.

Public by design, and so 0644 / 0755: the keyring (`keyring.json`, `otel-audit keys export`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import stat
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700
PUBLIC_FILE_MODE = 0o644
PUBLIC_DIR_MODE = 0o755
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: permission bits that let other users read or change a file or a folder's list of names
OTHERS_RW = stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH
OTHERS_W = stat.S_IWGRP | stat.S_IWOTH


def make_dirs(path: str | os.PathLike[str], mode: int = DIR_MODE) -> bool:
    """Create folder `path` and any missing parents, each one created with `mode` exactly.

    Folders that exist are left as they are (their mode is the user's). Returns whether `path`
    itself was created. OSError as os.mkdir raises it (FileExistsError if `path` is not a folder)."""
    p = Path(path)
    missing: list[Path] = []
    while not p.is_dir():
        if os.path.lexists(p):  # a file, or a symlink to nowhere: mkdir says so with the path
            break
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            if d.is_dir():  # made meanwhile by another process: its mode is its maker's
                continue
            raise
        _fix_dir_mode(d, mode)
    if not missing and not Path(path).is_dir():
        os.mkdir(path, mode)  # raises FileExistsError naming `path`
    return bool(missing)


def _fix_dir_mode(d: Path, mode: int) -> None:
    """chmod a folder just made, through a descriptor that cannot follow a symlink put in its place."""
    try:
        fd = os.open(d, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
    except OSError:
        os.chmod(d, mode)  # a platform without O_DIRECTORY / O_NOFOLLOW semantics for folders
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def open_new(path: str | os.PathLike[str], flags: int = os.O_WRONLY | os.O_TRUNC, mode: int = FILE_MODE) -> int:
    """A descriptor of a new, empty file at `path`, whose mode is then `mode` exactly.

    For a temporary file about to be renamed into place, and for a file the product owns outright
    (a spool segment). Whatever is at `path` already (a leftover of a crash, or a symlink someone
    planted there to have the product overwrite their target) is removed first, and the file is
    created exclusively without following a link (``O_EXCL | O_NOFOLLOW``), so a planted name is
    never written through."""
    flags = (flags & ~os.O_TRUNC) | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    for _ in range(8):
        try:
            fd = os.open(path, flags, mode)
            break
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a symlink is removed itself, never its target
    else:
        raise FileExistsError(errno.EEXIST, "recreated while being replaced, 8 times", str(path))
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: str | os.PathLike[str], flags: int = os.O_WRONLY | os.O_APPEND,
                mode: int = FILE_MODE) -> int:
    """A descriptor of `path` to add to: a file created now gets `mode` exactly, one that exists keeps its own."""
    for _ in range(8):
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | _CLOEXEC, mode)
        except FileExistsError:
            try:
                return os.open(path, flags | _CLOEXEC)
            except FileNotFoundError:
                continue  # removed in between (a rotation): create it after all
        try:
            os.fchmod(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        return fd
    return os.open(path, flags | os.O_CREAT | _CLOEXEC, mode)


def open_lock(path: str | os.PathLike[str]) -> IO[Any]:
    """A lock file opened to flock it (created 0600 if missing), as a binary file object."""
    return os.fdopen(open_append(path, os.O_RDWR | os.O_APPEND), "a+b")


def write_private(path: str | os.PathLike[str], data: bytes, mode: int = FILE_MODE) -> None:
    """Write `data` to `path` (created or truncated), which then has `mode` exactly."""
    fd = open_new(path, os.O_WRONLY | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


# -- what check-config says about what exists ------------------------------------------------------


def describe_mode(mode: int) -> str:
    """Who else may do what: "can be read by its group and every user", "can be read and changed by its group"."""
    acts: list[tuple[str, str]] = []
    for who, r, w in (("its group", stat.S_IRGRP, stat.S_IWGRP), ("every user", stat.S_IROTH, stat.S_IWOTH)):
        did = " and ".join(a for a, bit in (("read", r), ("changed", w)) if mode & bit)
        if did:
            acts.append((did, who))
    if len(acts) == 2 and acts[0][0] == acts[1][0]:
        return f"can be {acts[0][0]} by its group and every user"
    return "can be " + ", ".join(f"{did} by {who}" for did, who in acts)


def loose(path: str | os.PathLike[str], *, public: bool = False) -> tuple[int, bool] | None:
    """(mode, is a folder) if others may read or write `path` (only write, if it is `public`); None if it
    is private, absent or cannot be examined. A symlink is judged by what it points to."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return None
    if mode & (OTHERS_W if public else OTHERS_RW):
        return mode, stat.S_ISDIR(st.st_mode)
    return None


def loose_message(path: str | os.PathLike[str], mode: int, is_dir: bool, holds: str) -> str:
    """`PATH (a folder) can be read by every user (mode 0755); it holds ...; fix: chmod 700 PATH`."""
    fix = f"chmod {'700' if is_dir else '600'} {shlex.quote(str(path))}"
    kind = "folder " if is_dir else ""
    return f"{kind}{path} {describe_mode(mode)} (mode {mode:04o}); it holds {holds}; fix: {fix}"


def loose_files(folder: str | os.PathLike[str], names: list[str] | None = None, *,
                limit: int = 10_000) -> list[tuple[Path, int]]:
    """The regular files directly in `folder` (or those of `names` there) that others may read or
    write, with their modes; at most `limit` entries of the folder are looked at."""
    d = Path(folder)
    out: list[tuple[Path, int]] = []
    if names is None:
        names = []
        with contextlib.suppress(OSError), os.scandir(d) as it:
            for i, entry in enumerate(it):
                if i >= limit:
                    break
                names.append(entry.name)
    for name in sorted(names):
        found = loose(d / name)
        if found is not None and not found[1]:
            out.append((d / name, found[0]))
    return out


__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "PUBLIC_DIR_MODE",
    "PUBLIC_FILE_MODE",
    "describe_mode",
    "loose",
    "loose_files",
    "loose_message",
    "make_dirs",
    "open_append",
    "open_lock",
    "open_new",
    "write_private",
]
