"""Chaos: kill -9 the whole workflow 10 times at random moments, resume, compare with a clean run.

The harness is `benchmarks/chaos.py` (run it with more iterations there). Deselect with
`pytest -m "not chaos"` (about two minutes on 2 cores).
"""

from __future__ import annotations

import pytest
import xarray as xr

from benchmarks.chaos import (
    FEATURES,
    chaos,
    check_reference,
    new_workdir,
    prepare_demo,
    timed_run,
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.slow]

ITERATIONS = 10
SEED = 1


def test_killed_runs_resume_to_the_clean_result(tmp_path):
    template = prepare_demo(tmp_path)
    reference = new_workdir(tmp_path, "clean", template)
    clean_run_s = timed_run(reference)
    check_reference(reference)

    candidate = new_workdir(tmp_path, "chaos", template)
    history, problems = chaos(candidate, ITERATIONS, SEED, clean_run_s, reference)

    assert len(history) == ITERATIONS
    assert sum(row.killed for row in history) >= ITERATIONS // 2, history
    assert any(row.jobs_started > row.jobs_finished for row in history if row.killed), (
        "no kill landed while a job was running",
        history,
    )
    for fid in FEATURES:
        with xr.open_dataset(reference / "results" / "cubes" / f"{fid}.nc") as expected:
            n_dates = expected.sizes["time"]
        with xr.open_dataset(candidate / "results" / "cubes" / f"{fid}.nc") as cube:
            assert cube.sizes["time"] == n_dates > 0
    assert problems == []
