"""Write files so that a killed job leaves either the old file, no file, or the complete new one.

Writers put their output at a temporary name beside the target, `.{name}.tmp-{pid}`, and rename
it into place when complete. A killed writer leaves that temporary behind; it is removed when a
process first writes into the same directory (`atomic_path`: once per directory and process, as
listing a directory of 10 000 cubes costs 6 ms, too much for every write of a batch job) and at
the end of every run (`sweep_temporaries`, called from the Snakefile's `onsuccess`/`onerror`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp-"
# the directories this process has written into, and so swept (`atomic_path`)
_SWEPT: set[Path] = set()


def temporary_for(target: Path) -> Path:
    """This process's temporary name for `target`."""
    return target.with_name(f".{target.name}{TEMPORARY_SUFFIX}{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.parent not in _SWEPT:
        remove_stale_temporaries(target.parent, f".*{TEMPORARY_SUFFIX}*")
        _SWEPT.add(target.parent)
    temporary = temporary_for(target)
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def replace_directory(source: Path, target: Path) -> None:
    """Rename the complete directory `source` to `target`; an existing `target` is moved aside
    first, then removed (a directory cannot be renamed over a non-empty one)."""
    previous = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, previous)
    os.replace(source, target)
    shutil.rmtree(previous, ignore_errors=True)


def sweep_temporaries(directory: str | Path = "results") -> list[Path]:
    """Delete the temporaries killed writers left anywhere under `directory`; return them.

    A temporary whose writer is still alive (another Snakemake run in the same directory) is
    left alone.
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    return remove_stale_temporaries(root, f".*{TEMPORARY_SUFFIX}*", recursive=True)


def remove_stale_temporaries(directory: Path, pattern: str, recursive: bool = False) -> list[Path]:
    """Remove files or directories matching `pattern` whose writer process is gone."""
    removed = []
    candidates = directory.rglob(pattern) if recursive else directory.glob(pattern)
    for leftover in sorted(candidates):
        pid = leftover.name.rsplit(TEMPORARY_SUFFIX, 1)[1]
        if not pid.isdigit() or _process_alive(int(pid)):
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        removed.append(leftover)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
