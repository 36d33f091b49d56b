"""Helpers shared by the job-script tests: logical command lines and stub launchers."""

from __future__ import annotations

from pathlib import Path

_STUB = """#!/bin/bash
{{ printf '%s\\n' "$(basename "$0")"; printf '%s\\n' "$@"; printf '%s\\n' '--end--'; }} >> "{log}"
{extra}
"""


def commands(text: str) -> list[str]:
    """Logical command lines: comments and blank lines dropped, ``\\`` joined."""
    out: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    if pending:
        out.append(pending)
    return out


def write_stub(path: Path, log: Path, extra: str = "") -> None:
    """An executable that appends its name and arguments to ``log``, then runs ``extra``."""
    path.write_text(_STUB.format(log=log, extra=extra), encoding="utf-8")
    path.chmod(0o755)


def read_calls(log: Path) -> list[list[str]]:
    """The calls a stub logged: ``[name, arg, ...]`` each."""
    calls: list[list[str]] = []
    current: list[str] = []
    if not log.exists():
        return calls
    for line in log.read_text(encoding="utf-8").splitlines():
        if line == "--end--":
            calls.append(current)
            current = []
        else:
            current.append(line)
    return calls
