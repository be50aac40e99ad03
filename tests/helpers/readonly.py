"""Another user, for the tests of what curator does with files it may not write."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

NOBODY = 65534
MESSAGE = "is read-only for this user (its file or folder cannot be written)"


def as_ordinary_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and a digest of its bytes: what "nothing changed" means."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def set_writable(folder: Path, writable: bool) -> None:
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755 if writable else 0o555)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644 if writable else 0o444)
    folder.chmod(0o755 if writable else 0o555)
