"""Logging for rule scripts: to the rule's log file, with timestamps and the job's duration."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def job_logging(log_path: str | Path | None, job: str) -> Iterator[logging.Logger]:
    """Log to `log_path` (warnings also to stderr), with the job's start, end, duration, errors.

    The console stays readable with thousands of jobs; the per-job log has the details.
    """
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [console]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    logger = logging.getLogger("sitsflow")
    started = time.perf_counter()
    logger.info("%s: started", job)
    try:
        yield logger
    except Exception:
        logger.exception("%s: failed after %.2f s", job, time.perf_counter() - started)
        raise
    logger.info("%s: done in %.2f s", job, time.perf_counter() - started)
