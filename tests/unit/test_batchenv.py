"""Batch awareness: scheduler, job id, walltime and variables from an environment."""

from __future__ import annotations

import json
import os

import pytest

from mpiwf.batchenv import (
    MAX_VALUE,
    PREFIXES,
    batch_rows,
    batch_vars,
    collect,
    doctor_section,
    hms,
)

SLURM = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_START_TIME": "1000",
         "SLURM_JOB_END_TIME": "4600", "HOME": "/home/u", "PATH": "/bin"}


def test_outside_a_job() -> None:
    b = collect({"HOME": "/h", "PATH": "/bin"}, now=0.0)
    assert b["scheduler"] is None and b["job_id"] is None and b["vars"] == {}
    assert b["walltime_s"] is None and b["remaining_s"] is None
    assert batch_rows(b) == [("batch scheduler", "none (not inside a batch job)")]


def test_slurm_walltime_and_time_left() -> None:
    b = collect(SLURM, now=1600.0)
    assert (b["scheduler"], b["job_id"]) == ("slurm", "4242")
    assert b["walltime_s"] == 3600.0 and b["end_time"] == 4600.0 and b["remaining_s"] == 3000.0
    assert set(b["vars"]) == {"SLURM_JOB_ID", "SLURM_JOB_NUM_NODES", "SLURM_JOB_START_TIME",
                              "SLURM_JOB_END_TIME"}
    rows = dict(batch_rows(b))
    assert rows["batch scheduler"] == "slurm" and rows["job id"] == "4242"
    assert rows["walltime"].startswith("1:00:00 (from SLURM_JOB_END_TIME")
    assert rows["time left"] == "0:50:00"
    assert rows["batch variables"] == "4 SLURM_*"
    # the trace stores it as JSON: it must round-trip
    assert json.loads(json.dumps(b)) == b


def test_time_left_never_negative() -> None:
    assert collect(SLURM, now=9999.0)["remaining_s"] == 0.0


def test_pbs_lsf_flux_detection() -> None:
    pbs = collect({"PBS_JOBID": "12.pbs01", "PBS_NODEFILE": "/var/n", "PBS_WALLTIME": "5400"})
    assert (pbs["scheduler"], pbs["job_id"], pbs["walltime_s"]) == ("pbs", "12.pbs01", 5400.0)
    assert pbs["walltime_source"] == "PBS_WALLTIME" and pbs["remaining_s"] is None
    lsf = collect({"LSB_JOBID": "77", "LSB_DJOB_HOSTFILE": "/tmp/h"})
    assert (lsf["scheduler"], lsf["walltime_s"]) == ("lsf", None)
    assert "no limit" in dict(batch_rows(lsf))["walltime"]
    # a Flux instance inside a Slurm job: Flux launched the ranks
    nested = collect({**SLURM, "FLUX_JOB_ID": "f3x", "FLUX_URI": "local:///run/flux"}, now=0)
    assert (nested["scheduler"], nested["job_id"]) == ("flux", "f3x")
    assert dict(batch_rows(nested))["batch variables"] == "4 SLURM_*, 2 FLUX_*"


def test_bad_numbers_are_unknown_not_errors() -> None:
    b = collect({"SLURM_JOB_ID": "1", "SLURM_JOB_END_TIME": "soon", "PBS_WALLTIME": "x"})
    assert b["walltime_s"] is None and b["end_time"] is None


def test_long_values_are_cut() -> None:
    v = batch_vars({"PBS_O_PATH": "x" * 5000, "OTHER": "y"})
    assert list(v) == ["PBS_O_PATH"] and len(v["PBS_O_PATH"]) == MAX_VALUE
    assert v["PBS_O_PATH"].endswith("...")


def test_hms() -> None:
    assert hms(None) == "unknown"
    assert hms(59.6) == "0:01:00"
    assert hms(90061) == "25:01:01"


def test_doctor_section_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith(PREFIXES)]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("PBS_JOBID", "5.srv")
    rows = doctor_section({"ignored": True})
    assert rows[:2] == [("batch", "batch scheduler", "pbs"), ("batch", "job id", "5.srv")]
    assert all(len(r) == 3 and r[0] == "batch" for r in rows)
