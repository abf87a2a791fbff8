"""Writing generated files: all or nothing, never over a user's edits unless told.

Each file is written to a temporary file in the same folder and renamed into place,
so a failure (a full disk, an unwritable folder) leaves the old file or no file,
never half of one. Files we may regenerate carry a checksum line: an unedited file
is ours to replace; an edited one is the user's until ``--force``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from zephyr_deploy._exceptions import DeployError, FileExists

CHECKSUM_PREFIX = "# zephyr-checksum: sha256:"


def checksum(body: str) -> str:
    """The checksum line for ``body`` (everything after that line)."""
    return CHECKSUM_PREFIX + hashlib.sha256(body.encode()).hexdigest()


def with_checksum(header: str, body: str) -> str:
    """``header``, then the checksum of ``body``, then ``body``."""
    return f"{header}{checksum(body)}\n{body}"


def is_unedited(text: str) -> bool:
    """True when ``text`` carries a checksum line that still matches what follows it."""
    before, sep, rest = text.partition(CHECKSUM_PREFIX)
    if not sep or (before and not before.endswith("\n")):
        return False
    digest, newline, body = rest.partition("\n")
    return bool(newline) and hashlib.sha256(body.encode()).hexdigest() == digest


def check_writable(
    path: Path, content: str, *, force: bool, replace_unedited: bool = False
) -> bool:
    """Whether ``path`` needs writing; raise :class:`FileExists` if it must stay.

    Returns False when the file already holds ``content`` exactly.
    """
    if not path.exists():
        return True
    try:
        current = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeployError(f"cannot read {path}: {exc}") from None
    if current == content:
        return False
    if force:
        return True
    if replace_unedited and is_unedited(current):
        return True
    if replace_unedited:
        raise FileExists(
            f"{path.name} exists and was edited by hand (or not written by zephyr); "
            "left untouched: pass --force to overwrite it"
        )
    raise FileExists(f"{path.name} exists; left untouched: pass --force to overwrite it")


def write_all(files: dict[Path, str]) -> None:
    """Write every file, each through a temporary file renamed into place.

    All temporary files are written before the first rename, so a folder we cannot
    write in, or a full disk, leaves every target as it was.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, content in files.items():
            try:
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            except OSError as exc:
                raise DeployError(f"cannot write in {path.parent}: {exc.strerror}") from None
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
                out.write(content)
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
            os.chmod(tmp, mode)
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as exc:
        raise DeployError(f"cannot write {exc.filename or 'a file'}: {exc.strerror}") from None
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
