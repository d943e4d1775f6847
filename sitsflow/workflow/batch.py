"""Batch mode: many features per Snakemake job, still one set of files per feature.

Per-feature jobs cost Snakemake per job: 10 000 features make 20 000 (a bbox and a cube job
each; a dry run of the 50 000-job DAG they made when every stage was its own job took 266 s and
1 GB, docs/scaling.md), Snakemake schedules trivial jobs at ~14 per second, and every job pays
its start and imports. In batch mode (config `batch_size`) one `batch` job runs a
fixed group of features through every per-feature stage (bbox, items, cube, quicklook, time
series) in one process, and writes the same per-feature files and logs as the per-feature jobs
would.

Incremental reruns stay per feature:

* **Membership is stable**: a batch holds the features of one cell of a quadtree over one search
  group (`sitsflow.catalog.groups`), cut by where they lie (`plan_batches`). A feature's group
  and cell depend only on its own centroid and its cell's other features, so appending or
  editing a feature changes only the batches of its cell (and of the cell a moved feature
  left). Snakemake reruns exactly those batches.
* **A batch skips what is up to date**: each stage's *fingerprint* (a hash of the feature's
  geometry, the stage's config values and the upstream stage's fingerprint) is recorded per
  feature in `results/batches/state/{id}.json` when the stage succeeds. A rerun batch redoes a
  stage only when its output is missing, its fingerprint changed, its input file is newer, or an
  upstream stage was redone, like Snakemake's own rerun triggers for per-feature jobs.
* **Failures stay per feature**: a feature whose stage fails is logged in its stage log
  (`logs/{stage}/{id}.log`, as a per-feature job would) and the batch goes on with the next
  feature. Like a failed job, the failed stage's output does not exist afterwards. The batch job
  fails at the end if any feature failed, so the run ends in error and the `onerror` summary
  lists the failed features; the other features' files are complete and are not redone.

**Reads are shared**: a batch's features lie close together and read the same files. The batch
first brings every member's bbox and items up to date, then reads the cubes in rounds of
about `READ_ROUND_BYTES` of pixels: a round's files are opened once and each tile fetched and
decoded once for all its features (`sitsflow.pixels.tiles.TileReader.prefetch`), and the
tiles fetched are kept on local disk for the later rounds, so each tile is fetched once per
batch. Then each feature's cube, quicklook and time series are made from its share.

The per-feature files are not declared Snakemake outputs (a failed member would make Snakemake
delete the whole batch's files); the declared output is the batch's manifest,
`results/batches/{batch}.json`, written when every member succeeded; it also carries the
members' summary rows, and `results/batches/{batch}.timeseries.parquet` their time series, so
that the run-wide summary and time-series table are put together from the batches without
reopening 10 000 files after each change. A member file deleted by hand after its batch ran is
found when the workflow is parsed (`missing_member_files`), and the batch is rerun
(rules/common.smk). Paths and stages: `sitsflow.core.layout`; rules: rules/batch.smk."""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sitsflow.core.atomic import atomic_path, atomic_write_text
from sitsflow.core.batch_manifest import recorded_generation, write_batch_manifest
from sitsflow.core.errors import SitsflowError
from sitsflow.core.features import AttributeValue, Feature
from sitsflow.core.logs import job_logging, logged_to

if TYPE_CHECKING:
    from sitsflow.pixels.tiles import ReadRequest
from sitsflow.core.layout import Layout
from sitsflow.core.pipeline import STAGE_NAMES, STAGES, UPSTREAM, Stage, stage_named
from sitsflow.workflow.context import BatchContext, BatchSettings, FeatureItems
from sitsflow.workflow.stages import (
    CubeTimeseries,
    cube_timeseries,
    current_items,
    file_stamp,
    modification_time,
    read_bbox,
)

log = logging.getLogger(__name__)

# `batch_size: auto`: per-feature jobs up to AUTO_PER_FEATURE features; above, batches of at
# most AUTO_BATCH_SIZE neighbours. The quadtree's cells hold about half their bound on
# average (clustered points: 1 000 in 7 to 8 batches with 200, 10 000 in 79), and each batch
# job pays about 1.4 s of CPU to start and decodes again the blocks its neighbours share: a
# larger bound than the per-feature limit (which would also cost parallelism on many cores).
AUTO_PER_FEATURE = 50
AUTO_BATCH_SIZE = 200
# Pixels (float32) of the features a batch reads together: a round's stacks are all in memory.
# On the full-size archive (1 000 clustered points, 50 per batch) 128 MB peaked at 553 MB per
# batch job, 64 MB with few heap arenas at 460 MB; the tiles rounds share come from the disk
# cache, so smaller rounds cost decoding, not bytes.
READ_ROUND_BYTES = 64 * 2**20


class BatchFailed(SitsflowError):
    """Some features of a batch failed (the others were processed)."""


@dataclass
class FeatureOutcome:
    """What a batch did for one feature: stages redone, stages up to date, or the failure."""

    fid: str
    ran: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    failed_stage: str | None = None
    error: str | None = None
    seconds: float = 0.0
    # the feature's stage fingerprints (`stage_fingerprints`), worked out once per job
    fingerprints: dict[str, str] = field(default_factory=dict, repr=False)
    # the fingerprints its state file records, read once per job and kept up to date with
    # the stages run since (`process_feature`); None until read
    recorded: dict[str, str] | None = field(default=None, repr=False)
    # whether `recorded` differs from the state file (written once, after the last stages)
    state_changed: bool = False

    @property
    def ok(self) -> bool:
        return self.failed_stage is None


# --------------------------------------------------------------------------------------------
# Planning (at parse time, in every Snakemake process: must be cheap and deterministic)


def resolve_batch_size(setting: int | str, n_features: int) -> int:
    """The batch size for `batch_size` (`auto`, 0 or a size); 0 means one job per feature.

    `auto` keeps per-feature jobs for small inputs (their per-stage jobs and logs are easiest
    to follow) and batches of at most AUTO_BATCH_SIZE features above AUTO_PER_FEATURE.
    """
    if setting == "auto":
        return 0 if n_features <= AUTO_PER_FEATURE else AUTO_BATCH_SIZE
    size = int(setting)
    if size < 0:
        raise ValueError(f"batch_size must be 'auto', 0 or a positive number, got {setting!r}")
    return size


# Quadtree depth below a search group's cell at which crowded features are cut in file order
# instead (2 degree cells: 2 / 2**16 degrees, about 3 m: only features at one spot get there).
MAX_SPLIT_DEPTH = 16
BATCH_ID = re.compile(r"-q[0-3]*r?(-c\d{4})?$")


def plan_batches(
    groups: Mapping[str, Sequence[str]],
    batch_size: int,
    features: Mapping[str, Feature],
    degrees: float,
) -> dict[str, list[str]]:
    """Batch id -> member ids: each search group's features (`sitsflow.catalog.groups`) cut by
    where they lie, so that neighbours, which read the same tiles and blocks, share a batch.

    A group's features are split by a quadtree over their lon/lat centroids,
    rooted at the group's own cell (`degrees` on a side, `stac.group_degrees`, fixed whatever
    the features): a cell with more than `batch_size` features is cut into four, until every
    cell holds at most `batch_size`; each such cell is one batch, its id the group and the
    cell's path
    (`e008n48-q`, `e008n48-q0312`; `-c0001` for features at one spot cut in file order), its
    members in file order. The smallest quarters of a cut cell, taken from the smallest up
    as long as together they hold at most `batch_size`, are not batches of their own: two or
    more so taken form one batch, the cell's rest (`e008n48-q03r`), so that the sparse edges
    of a cluster and the small quarters beside a dense one do not make many small batches
    (each pays a job's start, about 1.4 s of CPU). A feature's batch thus follows from its
    own position and its cell's other features: appending or editing a feature changes only
    the batches of the cell it lands in (its quarter may split in four, join the cell's rest
    or leave it: the rest changes too), and those of the cell a moved feature left; never a
    batch elsewhere.
    """
    if batch_size <= 0:
        return {}
    batches: dict[str, list[str]] = {}
    for group, members in groups.items():
        points = {
            fid: (features[fid].geometry.centroid.x, features[fid].geometry.centroid.y)
            for fid in members
        }
        x, y = next(iter(points.values()))
        if degrees > 0:
            west, south = math.floor(x / degrees) * degrees, math.floor(y / degrees) * degrees
            bounds = (west, south, west + degrees, south + degrees)
        else:  # one feature per group
            bounds = (x, y, x, y)
        for path, cell in _quadtree(points, bounds, batch_size, "q", 0).items():
            batches[f"{group}-{path}"] = cell
    return dict(sorted(batches.items()))


def _quadtree(
    points: Mapping[str, tuple[float, float]],
    bounds: tuple[float, float, float, float],
    batch_size: int,
    path: str,
    depth: int,
) -> dict[str, list[str]]:
    """Cells of at most `batch_size` of `points` (file order kept), by their quadtree path; a
    cut cell's smallest quarters pooled as its rest (`plan_batches`)."""
    fids = list(points)
    if len(fids) <= batch_size:
        return {path: fids}
    if depth >= MAX_SPLIT_DEPTH:
        chunks = range(0, len(fids), batch_size)
        return {f"{path}-c{n:04d}": fids[i : i + batch_size] for n, i in enumerate(chunks)}
    minx, miny, maxx, maxy = bounds
    midx, midy = (minx + maxx) / 2, (miny + maxy) / 2
    quadrants: dict[int, dict[str, tuple[float, float]]] = {}
    for fid, (x, y) in points.items():
        quadrants.setdefault(int(x >= midx) + 2 * int(y >= midy), {})[fid] = (x, y)
    pooled: list[int] = []
    size = 0
    for quadrant, members in sorted(quadrants.items(), key=lambda entry: (len(entry[1]), entry[0])):
        if size + len(members) > batch_size:
            break
        pooled.append(quadrant)
        size += len(members)
    if len(pooled) < 2:  # a lone quarter that fits is a cell of its own, not a rest
        pooled = []
    cells = {}
    rest: set[str] = set()
    for quadrant, members in sorted(quadrants.items()):
        if quadrant in pooled:
            rest.update(members)
            continue
        east, north = quadrant % 2, quadrant // 2
        child = (
            midx if east else minx,
            midy if north else miny,
            maxx if east else midx,
            maxy if north else midy,
        )
        cells.update(_quadtree(members, child, batch_size, f"{path}{quadrant}", depth + 1))
    if rest:  # at most batch_size
        cells[f"{path}r"] = [fid for fid in fids if fid in rest]
    return cells


def batch_group(batch: str) -> str:
    """The search group of a batch (its id without the cell path)."""
    return BATCH_ID.sub("", batch)


def existing_files(layout: Layout, stages: Sequence[str] = STAGE_NAMES) -> set[str]:
    """Every per-feature file of `stages` that exists: one directory listing per stage, not
    one `stat` per feature and stage (100 000 features have 500 000 files)."""
    found: set[str] = set()
    for stage in stages:
        directory = os.path.dirname(layout.pattern(stage))
        try:
            with os.scandir(directory) as entries:
                found.update(f"{directory}/{entry.name}" for entry in entries)
        except FileNotFoundError:
            continue
    return found


def batch_generations(
    batches: Mapping[str, Sequence[str]],
    layout: Layout,
    warn: Callable[[str], object] | None = None,
    stages: Sequence[str] = STAGE_NAMES,
) -> dict[str, int]:
    """Each batch's generation, a `params:` value of its job, read when the workflow is parsed.

    It is the generation the batch's manifest records, plus one when a member's file is
    missing (deleted by hand after the batch ran): the params change, so Snakemake reruns the
    batch, which redoes just the missing files and records the new generation. The next run
    reads that generation back and finds the batch complete: nothing runs again. Only the
    files of `stages`, those the run makes, are looked for. (The
    per-feature files are not Snakemake outputs of the batch, so Snakemake cannot see that one
    is missing; parsing never deletes or writes files.) `warn` gets one line per such batch.
    """
    generations: dict[str, int] = {}
    existing: set[str] | None = None
    for batch, manifest in zip(batches, layout.manifests(batches), strict=True):
        recorded = recorded_generation(manifest)
        if recorded is None:
            generations[batch] = 0
            continue
        if existing is None:
            existing = existing_files(layout, stages)
        missing = [
            path
            for fid in batches[batch]
            for stage in stages
            if (path := layout.path(stage, fid)) not in existing
        ]
        generations[batch] = recorded + 1 if missing else recorded
        if missing and warn is not None:
            more = f" and {len(missing) - 1} more file(s)" if len(missing) > 1 else ""
            warn(f"batch {batch}: {missing[0]}{more} missing; the batch runs again to redo them")
    return generations


# --------------------------------------------------------------------------------------------
# Fingerprints and state


def stage_fingerprints(
    wkt: str, settings: BatchSettings, attributes: Mapping[str, object] | None = None
) -> dict[str, str]:
    """Each stage's fingerprint: its config values, its upstream stages' fingerprints, (bbox)
    the feature's geometry and (cube, which records them) its attributes. Equal fingerprints
    mean the same inputs and parameters."""
    params = _stage_params_json(settings)
    fingerprints: dict[str, str] = {}
    for each in STAGES:
        upstream = [fingerprints[name] for name in each.upstream]
        fingerprints[each.name] = _fingerprint(each, wkt, attributes, upstream, params[each.name])
    return fingerprints


def _fingerprint(
    stage: Stage,
    wkt: str | None,
    attributes: Mapping[str, object] | None,
    upstream: Sequence[str],
    params: str,
) -> str:
    """One stage's fingerprint (`stage_fingerprints`), its params already JSON text."""
    source: object = wkt if "geometry" in stage.feature_values else None
    if "attributes" in stage.feature_values and attributes:  # none: as a run without them
        source = dict(attributes)
    text = f"[{_json([stage.name, source, list(upstream)])[1:-1]},{params}]"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def record_job_stages(
    fid: str,
    stages: Sequence[str],
    params: Mapping[str, object],
    *,
    wkt: str | None = None,
    attributes: Mapping[str, object] | None = None,
) -> None:
    """Per-feature mode: record in the feature's state file the fingerprints of `stages`, which
    its job has just made, as a batch would (`stage_fingerprints`). A run that grows into
    batch mode (past AUTO_PER_FEATURE features with `batch_size: auto`) then finds them
    current and redoes none. `params`: the rule's params by settings section
    (`BatchSettings.rule_params`); `wkt`, `attributes`: the feature's, for the stages that
    depend on them. A stage whose upstream stage is not recorded (made by an older sitsflow,
    or whose job failed) is not recorded either: a batch redoes it."""
    path = Layout.state(fid)
    recorded = read_fingerprints(path)
    before = dict(recorded)
    for name in stages:
        stage = stage_named(name)
        upstream = [recorded.get(each) for each in stage.upstream]
        if any(each is None for each in upstream):
            recorded.pop(name, None)
            continue
        section = params[stage.settings] if stage.settings is not None else None
        recorded[name] = _fingerprint(
            stage, wkt, attributes, cast("list[str]", upstream), _json(section)
        )
    if recorded != before:
        write_fingerprints(path, recorded)


def forget_job_stages(fid: str, stages: Sequence[str]) -> None:
    """Per-feature mode: drop the recorded fingerprints of `stages` before the feature's job
    makes them again, so that a job that fails half-way leaves none to vouch for its files."""
    path = Layout.state(fid)
    recorded = read_fingerprints(path)
    if any(name in recorded for name in stages):
        write_fingerprints(path, {k: v for k, v in recorded.items() if k not in stages})


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


# the last settings asked for -> each stage's params as JSON text: the same for every feature
# of a job, which has one settings object (kept with them, so that its id is not reused)
_PARAMS_JSON: dict[int, tuple[BatchSettings, dict[str, str]]] = {}


def _stage_params_json(settings: BatchSettings) -> dict[str, str]:
    cached = _PARAMS_JSON.get(id(settings))
    if cached is None or cached[0] is not settings:
        texts = {each.name: _json(settings.stage_params(each.name)) for each in STAGES}
        _PARAMS_JSON.clear()  # one entry: a process making many settings keeps none of them
        cached = _PARAMS_JSON[id(settings)] = (settings, texts)
    return cached[1]


def read_fingerprints(path: str | Path) -> dict[str, str]:
    """Stage -> fingerprint recorded for a feature (empty if none or unreadable)."""
    try:
        state = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    fingerprints = state.get("fingerprints") if isinstance(state, dict) else None
    return dict(fingerprints) if isinstance(fingerprints, dict) else {}


def write_fingerprints(path: str | Path, fingerprints: Mapping[str, str]) -> None:
    atomic_write_text(path, json.dumps({"fingerprints": dict(fingerprints)}, sort_keys=True))


def _remove(path: str | Path) -> None:
    """Remove a stage's output file or Zarr directory, as Snakemake does before a job runs."""
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        import shutil

        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)


def stage_is_current(
    stage: str,
    fid: str,
    layout: Layout,
    fingerprint: str,
    recorded: Mapping[str, str],
) -> bool:
    """True if the stage's output exists, was made with `fingerprint`, and is not older than
    any of its input files (Snakemake's mtime rule)."""
    made = modification_time(layout.path(stage, fid))
    if made is None or recorded.get(stage) != fingerprint:
        return False
    inputs = [modification_time(layout.path(name, fid)) for name in UPSTREAM[stage]]
    return all(when is not None and when <= made for when in inputs)


StageRunner = Callable[[str, Feature, BatchContext], None]
StageRunnerOfFeature = Callable[[Feature, BatchContext], None]


def run_stage(name: str, feature: Feature, context: BatchContext) -> None:
    """Run one stage of one feature, reading its input files and writing its output: the
    stage's function (`sitsflow.core.pipeline.Stage.runner`, in `sitsflow.workflow.stages`,
    which the per-feature rule scripts call too)."""
    _runner(stage_named(name).runner)(feature, context)


@functools.cache
def _runner(reference: str) -> StageRunnerOfFeature:
    """The function `module:function` names."""
    module, function = reference.split(":")
    return cast(StageRunnerOfFeature, getattr(importlib.import_module(module), function))


# --------------------------------------------------------------------------------------------
# One feature, one batch


def process_feature(
    feature: Feature,
    context: BatchContext,
    stage_runner: StageRunner = run_stage,
    stages: Sequence[str] = STAGE_NAMES,
    outcome: FeatureOutcome | None = None,
    *,
    last: bool = True,
) -> FeatureOutcome:
    """Bring one feature's files up to date, stage by stage; never raises for a stage error.

    A stage runs if it is not current (see `stage_is_current`) or an input stage ran. Its
    old output and fingerprint are removed first, so a failed stage leaves no output (like a
    failed Snakemake job) and the next run redoes it. The stage log is `logs/{stage}/{id}.log`.
    `stages` (in order) and `outcome` let a batch run the first stages of every member before
    the rest: the outcome so far says which upstream stages ran. The feature's state file is
    written once, by the `last` of those calls (or the one where a stage failed).
    """
    started = time.perf_counter()
    fid, layout, settings = feature.fid, context.layout, context.settings
    outcome = outcome or FeatureOutcome(fid)
    if not outcome.ok:
        return outcome
    fingerprints = _fingerprints_of(feature, settings, outcome)
    recorded = _recorded_of(feature, context, outcome)
    changed = False
    for stage in stages:
        upstream_redone = any(name in outcome.ran for name in UPSTREAM[stage])
        current = stage_is_current(stage, fid, layout, fingerprints[stage], recorded)
        if not upstream_redone and current:
            outcome.up_to_date.append(stage)
            continue
        _remove(layout.path(stage, fid))
        recorded.pop(stage, None)
        changed = True
        cpu = time.process_time()
        try:
            with job_logging(layout.log(stage, fid), f"{stage} {fid}"):
                stage_runner(stage, feature, context)
        except Exception as exc:  # logged with its traceback in the stage log
            outcome.failed_stage, outcome.error = stage, f"{type(exc).__name__}: {exc}"
            break
        finally:
            context.cpu[stage] += time.process_time() - cpu
        recorded[stage] = fingerprints[stage]
        outcome.ran.append(stage)
    # A stage the run does not make (a quicklook, with `quicklooks` off) loses its file once a
    # stage it reads was redone: it would show another cube.
    for stage in set(STAGE_NAMES) - set(settings.stages) - set(outcome.ran):
        if any(name in outcome.ran for name in UPSTREAM[stage]):
            _remove(layout.path(stage, fid))
            changed = recorded.pop(stage, None) is not None or changed
    # Once for all the stages this job ran. A job killed before this keeps the record of
    # before, which cannot pass off a file as current: a removed file is missing, a remade
    # one is newer than what reads it, and a changed setting changed its fingerprint.
    outcome.state_changed = outcome.state_changed or changed
    if outcome.state_changed and (last or not outcome.ok):
        write_fingerprints(layout.state(fid), recorded)
        outcome.state_changed = False
    outcome.seconds += time.perf_counter() - started
    return outcome


def _fingerprints_of(
    feature: Feature, settings: BatchSettings, outcome: FeatureOutcome
) -> dict[str, str]:
    """The feature's stage fingerprints, kept in its outcome for the job's later stages."""
    if not outcome.fingerprints:
        outcome.fingerprints = stage_fingerprints(feature.wkt, settings, feature.labels)
    return outcome.fingerprints


def _recorded_of(
    feature: Feature, context: BatchContext, outcome: FeatureOutcome
) -> dict[str, str]:
    """The fingerprints the feature's state file records, read once per job and kept in its
    outcome, which the job's stages update."""
    if outcome.recorded is None:
        outcome.recorded = read_fingerprints(context.layout.state(feature.fid))
    return outcome.recorded


def stage_will_run(
    stage: str, feature: Feature, context: BatchContext, outcome: FeatureOutcome
) -> bool:
    """Whether `process_feature` will run `stage` next for this feature (see there)."""
    if not outcome.ok:
        return False
    if any(name in outcome.ran for name in UPSTREAM[stage]):
        return True
    fingerprint = _fingerprints_of(feature, context.settings, outcome)[stage]
    recorded = _recorded_of(feature, context, outcome)
    return not stage_is_current(stage, feature.fid, context.layout, fingerprint, recorded)


def read_rounds(
    requests: Sequence[tuple[Feature, ReadRequest]], limit: int = READ_ROUND_BYTES
) -> list[list[tuple[Feature, ReadRequest]]]:
    """`requests` in consecutive rounds whose stacks (float32) add up to at most `limit`
    bytes (a larger one alone)."""
    rounds: list[list[tuple[Feature, ReadRequest]]] = []
    size = 0
    for feature, request in requests:
        grid = request.grid
        nbytes = len(request.items) * len(request.bands) * grid.width * grid.height * 4
        if not rounds or size + nbytes > limit:
            rounds.append([])
            size = 0
        rounds[-1].append((feature, request))
        size += nbytes
    return rounds


def plan_rounds(
    members: Sequence[Feature], context: BatchContext, batch_log: logging.Logger
) -> list[list[Feature]]:
    """Plan the cube reads of `members` (their bbox and items are up to date) and group them
    into rounds; returns the rounds, each to be read together by `read_round`."""
    from sitsflow.pixels.cube import plan_read, read_request

    layout, settings = context.layout, context.settings
    planned: list[tuple[Feature, ReadRequest]] = []
    unplanned: list[Feature] = []
    for feature in along_hilbert_curve(members):
        path = layout.path("items", feature.fid)
        known = context.known_items.pop(feature.fid, None)
        try:
            stamp = file_stamp(path)
            items, info, known = current_items(path, known, stamp)
            record = read_bbox(layout.path("bbox", feature.fid))
            read_plan = plan_read(items, info, settings.cube)
            requests, signs = read_request(record, items, info, settings.cube, read_plan)
        except Exception as exc:  # its cube stage reports it, in its own log
            batch_log.info("%s: not read with the others (%s)", feature.fid, exc)
            unplanned.append(feature)
            continue
        if stamp is not None:  # for its cube stage (items kept only if they cost nothing)
            kept = known.items if known is not None else None
            context.known_items[feature.fid] = FeatureItems(stamp, kept, info, read_plan)
        context.signs_hrefs = context.signs_hrefs or signs
        planned.extend((feature, request) for request in requests)
    rounds = [
        list({feature.fid: feature for feature, _ in chunk}.values())
        for chunk in read_rounds(planned)
    ]
    context.requests = {}
    for feature, request in planned:
        context.requests.setdefault(feature.fid, []).append(request)
    return rounds + [[feature] for feature in unplanned]


HILBERT_ORDER = 16  # cells per side: 2**16, a few metres over a batch's extent


def along_hilbert_curve(features: Sequence[Feature]) -> list[Feature]:
    """`features` in the order a Hilbert curve over their extent visits their centroids: cut
    into consecutive rounds, each round's features lie close together, so a round decodes (or
    loads from the disk cache) the few tiles around them rather than tiles all over the batch,
    and the next round starts beside it. In a 200-feature batch of the held-out benchmark
    archive, each round of 17 loaded 550-920 decoded tiles in file order, 180-370 in this."""
    if len(features) < 3:
        return list(features)
    points = [(f.geometry.centroid.x, f.geometry.centroid.y) for f in features]
    xs, ys = [x for x, _ in points], [y for _, y in points]
    west, south = min(xs), min(ys)
    span = max(max(xs) - west, max(ys) - south) or 1.0
    side = 2**HILBERT_ORDER - 1

    def distance(point: tuple[float, float]) -> int:
        return hilbert_distance(
            round((point[0] - west) / span * side), round((point[1] - south) / span * side)
        )

    order = sorted(range(len(features)), key=lambda i: distance(points[i]))
    return [features[i] for i in order]


def hilbert_distance(x: int, y: int, order: int = HILBERT_ORDER) -> int:
    """The position of cell (x, y) (each in [0, 2**order)) along the Hilbert curve."""
    distance = 0
    half = 2 ** (order - 1)
    while half > 0:
        right, up = int(x & half > 0), int(y & half > 0)
        distance += half * half * ((3 * right) ^ up)
        if up == 0:  # rotate the quadrant so the curve's pieces join
            if right == 1:
                x, y = half - 1 - x, half - 1 - y
            x, y = y, x
        half //= 2
    return distance


def read_round(
    round_members: Sequence[Feature], context: BatchContext, batch_log: logging.Logger
) -> None:
    """Read the cubes of `round_members` together into the batch's loader, when it can
    (sitsflow's reader); each member's cube stage then takes its share."""
    requests = [r for f in round_members for r in context.requests.get(f.fid, [])]
    if len(requests) < 2:
        return
    loader = context.shared_loader()
    prefetch = getattr(loader, "prefetch", None)
    if prefetch is None:
        return
    started, cpu = time.perf_counter(), time.process_time()
    with logged_to(batch_log.handlers):  # what the reader read: in the batch's log
        kept = prefetch(requests, sign_hrefs=context.signs_hrefs)
    release_freed_memory()  # the tiles decoded for the round
    context.cpu["read"] += time.process_time() - cpu
    batch_log.info(
        "read the files of %d features together in %.2f s (%d kept)",
        len(requests),
        time.perf_counter() - started,
        kept,
    )


def cpu_summary(by_stage: Mapping[str, float], job_cpu: float, features: int) -> str:
    """The batch's CPU seconds by stage (the reads of its rounds apart), the job's in all (its
    start included: imports, settings) and per feature, for its log."""
    stages = ", ".join(f"{name} {seconds:.2f}" for name, seconds in by_stage.items())
    return (
        f"{job_cpu:.2f} s for the job ({job_cpu / max(features, 1):.3f} s per feature): "
        f"{stages or 'no stage ran'}"
    )


def batch_logger(log_path: str | Path | None) -> logging.Logger:
    """The batch job's own log (one line per feature), separate from the per-stage logs."""
    logger = logging.getLogger("sitsflow.workflow.batch.job")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_path, mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    return logger


# glibc mallopt parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
# A batch's arrays (stacks, tiles, cubes and their temporaries) are 0.1 to 30 MB. With glibc's
# defaults the heap gives back its top once twice the last large block is free, so each
# feature touched fresh pages again: a held-out batch of 194 features made 250 000 page faults,
# 140 000 when the heap keeps up to 128 MB free (and is not trimmed after every round), for the
# same peak RSS (340 MB) and 1.3 to 4 ms less CPU per feature (three runs side by side).
HEAP_MMAP_THRESHOLD = 32 * 2**20
HEAP_TRIM_THRESHOLD = 128 * 2**20
# Above this RSS a batch gives freed memory back (`release_freed_memory`), looked at after
# each round's reads and each feature's stages.
TRIM_ABOVE_RSS = 384 * 2**20


@functools.cache
def _glibc() -> Any:
    """glibc through ctypes, or None where the C library is another one (musl, macOS); found
    once per job (`find_library` runs `ldconfig`), as every read round asks for it."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def tune_heap(arenas: int = 1) -> None:
    """One malloc arena for this job's threads, and a heap that keeps freed memory for the
    next feature's arrays (`HEAP_TRIM_THRESHOLD`). The reader's decoding threads otherwise
    get arenas of their own: what they free (a round's decoded tiles) the main thread cannot
    reuse for the cubes, and the job keeps both (about 40 MB of peak RSS on full-size files
    with an arena per thread; with two arenas and the heap kept, a held-out batch once
    peaked at 780 MB against its usual 340 to 380, likely for that reason)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, arenas)
        libc.mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD)


def release_freed_memory(above: int = TRIM_ABOVE_RSS) -> bool:
    """Give the heap memory freed so far back to the system (glibc's `malloc_trim`) when the
    job's RSS is above `above` bytes: a round's stacks, tiles and cubes are many mid-sized
    arrays whose freed pages glibc may keep, and the job's RSS must not grow round by round.
    Below it the pages stay for the next round (see `HEAP_TRIM_THRESHOLD`). Whether it gave
    memory back."""
    libc = _glibc()
    if libc is None or resident_bytes() <= above:
        return False
    libc.malloc_trim(0)
    return True


def resident_bytes() -> int:
    """This process's resident set size (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def run_batch(
    batch: str,
    members: Mapping[str, str],
    context: BatchContext,
    log_path: str | Path | None = None,
    stage_runner: StageRunner = run_stage,
    attributes: Mapping[str, Mapping[str, AttributeValue]] | None = None,
) -> list[FeatureOutcome]:
    """Bring every member (feature id -> WKT) up to date; raise BatchFailed if any failed.
    `attributes`: feature id -> its vector-file attributes (config `attributes`).

    Every member is processed even after a failure. The batch log gets one line per member.
    The context's loader is closed at the end.
    """
    batch_log = batch_logger(log_path)
    try:
        return _run_batch(batch, members, context, batch_log, stage_runner, attributes)
    finally:
        if context.loader is not None:  # what its reads and the range cache did: in its log
            with logged_to(batch_log.handlers):
                context.loader.close()
            context.loader = None


def _run_batch(
    batch: str,
    members: Mapping[str, str],
    context: BatchContext,
    batch_log: logging.Logger,
    stage_runner: StageRunner,
    attributes: Mapping[str, Mapping[str, AttributeValue]] | None,
) -> list[FeatureOutcome]:
    from shapely import wkt as shapely_wkt

    started = time.perf_counter()
    batch_log.info("batch %s: %d features", batch, len(members))
    tune_heap()
    features = [
        Feature(fid, shapely_wkt.loads(geometry), tuple((attributes or {}).get(fid, {}).items()))
        for fid, geometry in members.items()
    ]
    # bbox and items of every member first, then the cubes read round by round (see module)
    stages = context.settings.stages
    split = stages.index("cube")
    progress = {
        f.fid: process_feature(f, context, stage_runner, stages[:split], last=False)
        for f in features
    }
    reading = [f for f in features if stage_will_run("cube", f, context, progress[f.fid])]
    rounds = plan_rounds(reading, context, batch_log) if len(reading) > 1 else []
    in_rounds = {f.fid for chunk in rounds for f in chunk}
    for chunk in [*rounds, *([f] for f in features if f.fid not in in_rounds)]:
        read_round(chunk, context, batch_log)
        for feature in chunk:
            progress[feature.fid] = process_feature(
                feature, context, stage_runner, stages[split:], progress[feature.fid]
            )
            context.built.pop(feature.fid, None)
            release_freed_memory()
    outcomes = [progress[fid] for fid in members]
    for outcome in outcomes:
        fid = outcome.fid
        if outcome.ok:
            ran = ", ".join(outcome.ran) or "nothing (up to date)"
            batch_log.info("%s: ran %s in %.2f s", fid, ran, outcome.seconds)
        else:
            batch_log.error(
                "%s: %s failed: %s (see %s)",
                fid,
                outcome.failed_stage,
                outcome.error,
                Layout.log(outcome.failed_stage or "bbox", fid),
            )
    failed = [outcome for outcome in outcomes if not outcome.ok]
    batch_log.info(
        "batch %s: %d features, %d redone, %d up to date, %d failed, done in %.2f s",
        batch,
        len(outcomes),
        sum(bool(outcome.ran) for outcome in outcomes if outcome.ok),
        sum(not outcome.ran for outcome in outcomes if outcome.ok),
        len(failed),
        time.perf_counter() - started,
    )
    batch_log.info("CPU: %s", cpu_summary(context.cpu, time.process_time(), len(outcomes)))
    if failed:
        listing = "; ".join(f"{o.fid} ({o.failed_stage}: {o.error})" for o in failed[:10])
        raise BatchFailed(
            f"{len(failed)} of {len(outcomes)} features of batch {batch} failed: {listing}. "
            "Their stage logs have the tracebacks; the other features are complete and are "
            "not redone by the next run"
        )
    return outcomes


def write_batch_results(
    batch: str,
    generation: int,
    outcomes: Sequence[FeatureOutcome],
    settings: BatchSettings,
    manifest: str | Path,
    timeseries_table: str | Path,
    written: Mapping[str, CubeTimeseries] | None = None,
) -> None:
    """The batch's share of the run-wide tables, so that those never reread every feature:
    its members' summary rows (in the manifest, with what each member ran) and their time
    series in one Parquet file. Only batches that run recompute theirs. `generation` is the
    batch's (see `batch_generations`). `written`: the table and summary row of each feature
    whose time series this job wrote (`BatchContext.tables`); the others' cubes are read."""
    from sitsflow.outputs.timeseries import combine_tables

    fids = [outcome.fid for outcome in outcomes]
    cubes = settings.layout.paths("cube", fids)
    known = written or {}
    # from the cubes, as the per-feature `timeseries` job does: the CSVs lose attribute types
    series = [
        known.get(fid) or cube_timeseries(path, settings.timeseries)
        for fid, path in zip(fids, cubes, strict=True)
    ]
    rows = [entry.summary_row for entry in series]
    table = combine_tables([entry.table for entry in series])
    with atomic_path(timeseries_table) as temporary:
        table.to_parquet(temporary, engine="pyarrow", index=False)
    members = {
        outcome.fid: {"ran": outcome.ran, "up_to_date": outcome.up_to_date} for outcome in outcomes
    }
    write_batch_manifest(manifest, batch, generation, members, rows)
