"""A batch's manifest, `results/batches/{batch}.json`: the declared output of a `batch` job.

It records the batch's generation (`sitsflow.workflow.batch.batch_generations`), what each
member ran, and the members' summary rows, so that the run-wide summary
(`sitsflow.outputs.summary`) is put together from the batches without reopening every cube.
The batch job writes it; the planning and the summary read it; this module is the one place
that knows its format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sitsflow.core.atomic import atomic_write_text

_GENERATION = re.compile(rb'"generation": (\d+)')


def write_batch_manifest(
    path: str | Path,
    batch: str,
    generation: int,
    members: Mapping[str, Mapping[str, Any]],
    summary_rows: Sequence[Mapping[str, Any]],
) -> None:
    """Write the manifest atomically; `generation` first, where `recorded_generation` looks."""
    document = {
        "batch": batch,
        "generation": generation,
        "features": {fid: dict(member) for fid, member in members.items()},
        "summary": [dict(row) for row in summary_rows],
    }
    atomic_write_text(path, json.dumps(document, indent=1))


def recorded_generation(manifest: str | Path) -> int | None:
    """The generation a batch manifest records (None: no manifest). Read from the head of the
    file: the manifest of 50 features is tens of KB, and parsing thousands of them would slow
    every `snakemake` start."""
    try:
        with open(manifest, "rb") as handle:
            head = handle.read(256)
    except FileNotFoundError:
        return None
    match = _GENERATION.search(head)
    return int(match[1]) if match else 0


def read_summary_rows(manifests: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The summary rows of every batch, in the order of `manifests` (then member order)."""
    return [row for path in manifests for row in json.loads(Path(path).read_text())["summary"]]
