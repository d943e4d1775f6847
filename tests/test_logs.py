"""Job logs (sitsflow/core/logs.py): a stage's log holds its own lines only, also in a batch job
that runs many stages in one process, and a batch's reads go to the batch's log."""

from __future__ import annotations

import logging

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
