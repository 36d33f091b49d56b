"""Subcommands of the ``mpiwf`` command line."""

from __future__ import annotations

import os


def refuse_overwrite(option: str, out: str, source: str, what: str) -> None:
    """Bad input unless ``out`` (an output path) is another file than ``source`` (an
    input the command reads, ``what``): writing it would destroy the input.

    Raises:
        SpecError: both name one existing file (a link to it included).
    """
    from ..errors import SpecError

    if os.path.exists(out) and os.path.exists(source) and os.path.samefile(out, source):
        raise SpecError(f"{option} {out}", f"is {what} (it would be overwritten); name "
                        "another output file")
