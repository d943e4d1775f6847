"""Job logs (sitsflow/core/logs.py): a stage's log holds its own lines only, also in a batch job
that runs many stages in one process, and a batch's reads go to the batch's log; a job's exit
(`exit_job`) loses no line and still runs the `atexit` functions."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from pathlib import Path

from sitsflow.core.logs import job_logging, logged_to


def test_a_stage_log_does_not_catch_what_is_logged_after_it(tmp_path):
    reader = logging.getLogger("sitsflow.pixels.tiles")
    with job_logging(tmp_path / "cube-a.log", "cube a"):
        reader.info("read 60 files for feature a")
    with logged_to([batch := logging.FileHandler(tmp_path / "batch.log")]):
        reader.info("read 60 files for 27 features")
    batch.close()
    reader.info("read by nobody's log")
    stage = (tmp_path / "cube-a.log").read_text()
    assert "cube a: started" in stage and "for feature a" in stage and "cube a: done" in stage
    assert "27 features" not in stage and "nobody" not in stage
    assert (tmp_path / "batch.log").read_text().strip() == "read 60 files for 27 features"


def test_a_failed_stage_logs_its_traceback_and_lets_go_of_its_log(tmp_path):
    try:
        with job_logging(tmp_path / "items-b.log", "items b"):
            raise RuntimeError("no such group")
    except RuntimeError:
        pass
    logging.getLogger("sitsflow").warning("a later warning")
    text = (tmp_path / "items-b.log").read_text()
    assert "items b: failed after" in text and "RuntimeError: no such group" in text
    assert "a later warning" not in text


def test_exit_job_keeps_what_was_logged_and_printed_and_runs_the_exit_functions(tmp_path):
    """`exit_job` skips the interpreter's teardown, which would otherwise flush the buffers: a
    piped stdout (block-buffered without PYTHONUNBUFFERED) and the job's log keep every line,
    and a function registered with `atexit` (the benchmarks' peak RSS hook) still runs."""
    script = tmp_path / "job.py"
    script.write_text(
        "import atexit, pathlib\n"
        f"atexit.register(pathlib.Path({str(tmp_path / 'rss')!r}).write_text, 'peak')\n"
        "from sitsflow.core.logs import exit_job, job_logging\n"
        f"with job_logging({str(tmp_path / 'job.log')!r}, 'summary') as log:\n"
        "    log.info('wrote the table')\n"
        "print('printed last', end='')\n"
        "exit_job()\n"
        "print('never printed')\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=environment, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "printed last"
    log = (tmp_path / "job.log").read_text()
    assert "wrote the table" in log and "summary: done in" in log
    assert (tmp_path / "rss").read_text() == "peak"


def test_every_rule_script_ends_with_exit_job():
    """Each job skips the teardown: the call is the last statement of every rule script."""
    scripts = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))
    assert scripts
    for script in scripts:
        last = ast.parse(script.read_text()).body[-1]
        assert isinstance(last, ast.Expr) and ast.unparse(last) == "exit_job()", script.name
