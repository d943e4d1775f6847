import os
import subprocess
import sys

import pytest

from sitsflow.core.atomic import atomic_path, atomic_write_text


def dead_pid() -> int:
    """The pid of a process that has exited (a killed writer)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_failed_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "cube.nc"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube.nc"]


def test_the_first_write_into_a_directory_removes_the_temporaries_of_dead_writers(tmp_path):
    target = tmp_path / "a.nc"
    stale = tmp_path / f".a.nc.tmp-{dead_pid()}"
    stale.write_text("left by a killed job")
    alive = tmp_path / f".a.nc.tmp-{os.getppid()}"  # a live writer: not ours to remove
    alive.write_text("in progress")
    other = tmp_path / f".b.nc.tmp-{dead_pid()}"  # another target's, its writer dead too
    other.write_text("x")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert not stale.exists() and alive.exists() and not other.exists()
    # once per directory and process: the next writes do not list the directory again
    later = tmp_path / f".c.nc.tmp-{dead_pid()}"
    later.write_text("left after the first write")
    atomic_write_text(tmp_path / "c.nc", "new")
    assert later.exists()  # the end of the run sweeps it (sweep_temporaries)
