"""Run ``mpiwf run`` in this process on each spec given; print one JSON line per spec.

Used by test_bad_input.py in a subprocess, so the test process never imports mpi4py and
MPI starts once for the whole catalogue.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile

from mpiwf.cli import main

out = []
tmp = tempfile.mkdtemp(prefix="mpiwf-bad-")
for spec in sys.argv[1:]:
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            rc = main(["run", spec, "--trace", os.path.join(tmp, "t.h5"), "--rundir",
                       os.path.join(tmp, "run"), "--progress", "0"])
        except BaseException as exc:  # noqa: BLE001 - reported, the test fails on it
            rc = f"raised {type(exc).__name__}: {exc}"
    out.append({"spec": spec, "rc": rc, "stderr": err.getvalue()})
print(json.dumps(out))
