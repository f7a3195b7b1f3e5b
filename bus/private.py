"""What this account keeps to itself: the bus's socket folder and the data directory.

- Files: every process of the pipeline runs under a umask of 077 (`private_umask`: `stream-tts`
  itself, each node's start, and supervisord.conf's `umask=077` for what supervisord writes), so
  what it creates is 0600 and its folders 0700.
- The data directory is 0700 (`secure_data_dir`): nothing under it, older files included, can be
  reached by another account. `tighten` also closes the project's own entries in it that an older
  version left 0644 / 0755 (`stream-tts up` runs it); the doctor warns about what is still open.
  Only a folder that can be the project's own is ever chmod-ed: never `/`, the home folder or one
  of its ancestors, nor a folder another account owns.
- An ipc endpoint's folder must be ours, a real folder and 0700 (`ensure_private_dir`): the first
  side there, binder or connector, makes it so; one that is not is refused, never used.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
# What the project writes into the data directory (the table in docs/configuration.md): `tighten`
# and the doctor look at these only, so a data_dir that is some bigger folder is not swept.
DATA_ENTRIES = (
    "journal.sqlite3",  # and its -wal / -shm beside it (every name starting with an entry)
    "played.jsonl",
    "wav",
    "log",
    "supervisord.conf",
    "supervisord.pid",
    "supervisor.sock",
    "keys",
    "voices",
    "device-choice.json",
    "hook-state.json",
    "tiny-models",
    "tiny.toml",
    "run",
)


class PrivacyError(PermissionError):
    """A folder the bus would use can be reached by other accounts (or is not ours)."""


def private_umask() -> None:
    """From now on this process creates files 0600 and folders 0700."""
    os.umask(UMASK)


def open_to_others(path: Path) -> str | None:
    """Why another account may reach `path` ("mode 0755: ...", "owned by uid 1000", "a symbolic
    link"), or None when it is ours with no group/other permission bits. Never follows a link."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link (the folder it points to could be anyone's)"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by this account (uid {os.geteuid()})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return f"mode {mode:04o}: group or other accounts have access"
    return None


def make_private_dirs(folder: Path) -> None:
    """mkdir -p with every folder it makes 0700 (Path.mkdir gives the parents the default mode)."""
    missing = []
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            p.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made by another process meanwhile: open_to_others judges it
        p.chmod(DIR_MODE)  # exactly 0700, whatever the umask left


def ensure_private_dir(folder: Path) -> None:
    """Make `folder` (0700) if it is not there; refuse it (PrivacyError, saying how to fix it) when
    it is not a folder of ours that only we can enter."""
    try:
        make_private_dirs(folder)
    except OSError as exc:
        raise PrivacyError(f"cannot make the bus folder {folder}: {exc.strerror or exc}") from exc
    if not folder.is_dir() and not folder.is_symlink():
        raise PrivacyError(f"{folder} is not a folder: remove it, then start again")
    why = open_to_others(folder)
    if why is None:
        return
    ours = folder.lstat().st_uid == os.geteuid() and not folder.is_symlink()
    fix = f"chmod 700 {folder}" if ours else f"remove {folder} (it is not this account's)"
    raise PrivacyError(
        f"the bus folder {folder} is {why}: another account could reach its sockets, so it is not "
        f"used. Fix: {fix}, then start again"
    )


def may_tighten(folder: Path) -> bool:
    """True when `folder` can be the project's own data dir: ours, and not /, home or above home."""
    try:
        if folder.lstat().st_uid != os.geteuid() or folder.is_symlink():
            return False
        real, home = folder.resolve(), Path.home().resolve()
    except (OSError, RuntimeError):
        return False
    return real != Path(real.anchor) and real != home and real not in home.parents


def secure_data_dir(data_dir: Path) -> None:
    """Make the data directory 0700, or close one of ours that others can enter."""
    if not data_dir.exists():
        make_private_dirs(data_dir)
    elif may_tighten(data_dir) and stat.S_IMODE(data_dir.stat().st_mode) & 0o077:
        data_dir.chmod(DIR_MODE)


def _is_entry(name: str) -> bool:
    return name in DATA_ENTRIES or name.startswith("journal.sqlite3")


def project_entries(data_dir: Path, limit: int = 20_000) -> Iterator[Path]:
    """The project's entries in the data dir (DATA_ENTRIES) and everything under them, at most
    `limit`; links are listed, never followed."""
    try:
        top = sorted(p for p in data_dir.iterdir() if _is_entry(p.name))
    except OSError:
        return
    count = 0
    for entry in top:
        stack = [entry]
        while stack:
            p = stack.pop()
            yield p
            count += 1
            if count >= limit:
                return
            if p.is_dir() and not p.is_symlink():
                try:
                    stack.extend(sorted(p.iterdir(), reverse=True))
                except OSError:
                    continue


def tighten(data_dir: Path) -> int:
    """Close what an older version left open in the data dir: the folder 0700, and every project
    entry of ours under it without group/other bits. Returns how many paths it changed."""
    if not data_dir.is_dir() or not may_tighten(data_dir):
        return 0
    changed = 0
    if stat.S_IMODE(data_dir.stat().st_mode) & 0o077:
        data_dir.chmod(DIR_MODE)
        changed += 1
    uid = os.geteuid()
    for p in project_entries(data_dir):
        try:
            st = p.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode) or st.st_uid != uid or not mode & 0o077:
                continue
            p.chmod(mode & ~0o077)
            changed += 1
        except OSError:
            continue
    return changed


def open_entries(data_dir: Path) -> list[tuple[Path, str]]:
    """(path, why) for each project entry under the data dir that other accounts could reach if
    they could enter the data dir (links are skipped)."""
    out = []
    for p in project_entries(data_dir):
        try:
            if p.is_symlink():
                continue
            why = open_to_others(p)
        except OSError:
            continue
        if why is not None:
            out.append((p, why))
    return out
