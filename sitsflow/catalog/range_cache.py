"""Byte ranges of remote files kept on local disk, for every job of a run (config `range_cache`).

Neighbouring features read the same tiles of the same files: inside a batch they are decoded
once for all members (`sitsflow.pixels.tiles.TileReader.prefetch`), and across batches and
per-feature jobs this cache serves a tile (and a file's header) that another job of the run
already fetched, from local disk instead of the network.

Layout: `DIRECTORY/<k[:2]>/<k>/` per file, `k` the SHA-1 of its URL without the query string
(a signed URL's token changes, the file does not), holding

* `version.json`: the file's size and ETag (or Last-Modified) as the server reported them
  with the bytes that were cached. A job that fetches a byte of the file compares what the
  server reports now: a file that changed since loses its cached ranges, and a job that had
  already used cached bytes of it fails that read, saying so (it would otherwise mix two
  versions of one file);
* `<v>/`, `v` a digest of that version: its bytes, so that bytes of two versions never share a
  name (a job reads `version.json` once per file, and finds no bytes of another version):
* `<v>/prefix`: the file's first bytes, as its first request fetched them (the COG header);
* `<v>/<start>-<stop>`: one byte range each, as the reader asked for it (an IFD beyond the
  prefix, a tile GDAL-free readers fetch whole);
* `<v>/<start>-<stop>.tile`: the tile stored in bytes `start:stop`, decoded (sitsflow's reader):
  neither fetched nor decoded again. A 1024 x 1024 tile of 16-bit DNs is 2 MB decoded against
  1 to 2 MB compressed, and decoding it costs about 7 ms of CPU. The entry is a 32-byte
  header (TILE_HEADER) then the values in C order, read straight into an array: 0.065 against
  0.11 ms for a 512 x 512 tile with `np.load`, which parses a Python literal for its header.
  A reader that needs only some of its rows reads just those (`get_rows`): a round of
  neighbouring features uses about half the rows of a full-size tile. (Mapping the file
  instead would touch only a window's pages, 0.04 ms, but holds an open file per tile in
  memory: tiles of 128 x 128 pixels would pass a 1 024-file limit.)

Every file is written under a temporary name and linked into place (unless another job stored
it first), so concurrent jobs never read half a range. A job about to fetch and decode a tile
first claims it (`<v>/<start>-<stop>.claim`, created exclusively, removed once the tile is
kept): a job that needs a tile another job has claimed waits for it to appear rather than
fetching it too (neighbouring batches run at once and reach the same blocks together), and
fetches it itself when the claim goes without the tile (that job failed) or outlives
CLAIM_STALE_S (that job died). `DIRECTORY/usage` holds the bytes kept and the peak, updated under a
lock (`fcntl.flock`) each time a job has stored another COUNT_EVERY_BYTES (32 MB) and when it
closes: above `max_bytes` the least recently used ranges are removed down to 80 % of it (the
bound can thus be passed by 32 MB per job running at once; an eviction recounts what is on
disk, including what other jobs have not counted yet, which they count again: the usage errs
high, never low, by at most one step per job). Local files are never cached.

The workflow removes the directory when a run starts and when it ends (`Snakefile`), so a
cached range is trusted only within the run that fetched it; `RangeCache()` without a
directory is a private one, removed by `close` (a batch job's, with the run-wide cache off).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar, cast

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)
T = TypeVar("T")

USAGE_FILE = "usage"
DECODED_SUFFIX = ".tile"
# A decoded tile's entry: this header (TILE_MAGIC, its dtype as numpy spells it, its rows and
# columns), then its values in C order.
TILE_HEADER = struct.Struct("<8s8sQQ")
TILE_MAGIC = b"SFTILE1\0"
CLAIM_SUFFIX = ".claim"
# A claim this old is a dead job's: fetching and decoding one tile takes well under a second.
CLAIM_STALE_S = 30.0
VERSION_FILE = "version.json"
PREFIX_FILE = "prefix"
_BOOKKEEPING = (USAGE_FILE, f"{USAGE_FILE}.lock", VERSION_FILE)
# A job marks an entry it reads as recently used (evicted last) at most this often: once per
# read would cost a batch a system call per tile and round.
TOUCH_EVERY_S = 60.0
# When the cache outgrows its bound, the oldest ranges go until it holds this share of it.
EVICT_TO = 0.8
# A job adds what it stored to the usage file in steps of this many bytes (and when it closes):
# the bound can be exceeded by this much per job running at once.
COUNT_EVERY_BYTES = 32 * 2**20


@dataclass(frozen=True)
class TileRows:
    """Rows `first` to `first + len(values)` of a decoded tile that is `height` rows high
    (`RangeCache.get_rows`): the rows `values[i]` holds are tile row `first + i`."""

    values: np.ndarray
    first: int
    height: int


@dataclass(frozen=True)
class FileVersion:
    """What identifies a version of a remote file: its size and its ETag (or Last-Modified)."""

    size: int | None
    tag: str | None

    def same_as(self, other: FileVersion) -> bool:
        """Equal in every field both know (a server that sends no ETag is judged by size)."""
        if self.size is not None and other.size is not None and self.size != other.size:
            return False
        return not (self.tag and other.tag and self.tag != other.tag)

    def describe(self) -> str:
        return f"{self.size} bytes" + (f", {self.tag}" if self.tag else "")

    @property
    def key(self) -> str:
        """The name of the directory holding this version's bytes."""
        return hashlib.sha1(f"{self.size}|{self.tag}".encode()).hexdigest()[:12]


class RangeCache:
    """Byte ranges of files on local disk, shared by the processes that open one directory."""

    def __init__(
        self,
        directory: str | Path | None = None,
        max_bytes: int | None = None,
        count_every: int = COUNT_EVERY_BYTES,
    ) -> None:
        self.owned = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="sitsflow-ranges-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.bytes = 0  # written by this process
        self._uncounted = 0  # of which not yet added to the usage file
        self.count_every = count_every
        # (URL without query, version) -> the directory of that version's entries
        self._version_directories: dict[tuple[str, FileVersion], str] = {}
        # entry -> when this job last marked it as recently used (`_read_entry`)
        self._touched: dict[Path, float] = {}

    # ---- a file's version -----------------------------------------------------------------

    def _file_directory(self, url: str) -> Path:
        key = hashlib.sha1(url.split("?", 1)[0].encode()).hexdigest()
        return self.directory / key[:2] / key

    def version(self, url: str) -> FileVersion | None:
        """The version of `url` whose bytes are cached, None when none are."""
        try:
            data = json.loads((self._file_directory(url) / VERSION_FILE).read_text())
        except (OSError, ValueError):
            return None
        return FileVersion(data.get("size"), data.get("tag"))

    def record(self, url: str, version: FileVersion) -> FileVersion:
        """Make `version` the cached version of `url` unless one is recorded; return the one
        recorded (another job's may have come first)."""
        directory = self._file_directory(url)
        directory.mkdir(parents=True, exist_ok=True)
        temporary = directory / f"{VERSION_FILE}.{_writer()}.part"
        temporary.write_text(json.dumps({"size": version.size, "tag": version.tag}))
        try:
            os.link(temporary, directory / VERSION_FILE)  # fails if a version is recorded
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
        return self.version(url) or version

    def forget(self, url: str) -> None:
        """Remove every cached byte of `url` (it changed)."""
        directory = self._file_directory(url)

        def remove() -> int:
            freed = sum(entry.stat().st_size for entry in _entries(directory))
            shutil.rmtree(directory, ignore_errors=True)
            return -freed

        self._update(remove)

    # ---- ranges ---------------------------------------------------------------------------

    def _range_path(
        self,
        url: str,
        version: FileVersion,
        start: int | None,
        stop: int | None,
        suffix: str = "",
    ) -> Path:
        """Where the entry of bytes `start:stop` of `version` of `url` lies (`suffix`: its
        decoded tile's, its claim's). A batch asks for thousands: each version's directory is
        worked out once."""
        key = (url.split("?", 1)[0], version)
        directory = self._version_directories.get(key)
        if directory is None:
            directory = str(self._file_directory(url) / version.key)
            self._version_directories[key] = directory
        name = PREFIX_FILE if start is None else f"{start}-{stop}"
        return Path(f"{directory}/{name}{suffix}")

    def get(
        self,
        url: str,
        start: int | None = None,
        stop: int | None = None,
        *,
        version: FileVersion,
    ) -> bytes | None:
        """Bytes `start:stop` of `version` of `url` (its prefix without a range), None when
        not cached."""
        path = self._range_path(url, version, start, stop)
        return self._read_entry(path, lambda handle: handle.read())

    def put(
        self, url: str, start: int | None, stop: int | None, data: bytes, *, version: FileVersion
    ) -> None:
        """Keep bytes `start:stop` of `version` of `url` (its prefix with `start` None)."""
        path = self._range_path(url, version, start, stop)
        self._write_entry(path, lambda handle: handle.write(data), len(data))

    # ---- decoded tiles --------------------------------------------------------------------

    def get_array(
        self, url: str, start: int, stop: int, *, version: FileVersion
    ) -> np.ndarray | None:
        """The decoded tile stored in bytes `start:stop` of `version` of `url`, None when not
        cached."""
        kept = self.get_rows(url, start, stop, version=version)
        return kept.values if kept is not None else None

    def get_rows(
        self,
        url: str,
        start: int,
        stop: int,
        rows: tuple[int, int] | None = None,
        *,
        version: FileVersion,
    ) -> TileRows | None:
        """Rows `rows[0]` to `rows[1]` (exclusive; those the tile has; all without `rows`) of
        the decoded tile stored in bytes `start:stop` of `version` of `url`, None when not
        cached."""
        path = self._range_path(url, version, start, stop, DECODED_SUFFIX)
        return self._read_entry(path, lambda handle: _read_tile(handle, rows))

    def put_array(
        self,
        url: str,
        start: int,
        stop: int,
        array: np.ndarray,
        *,
        version: FileVersion,
        claimed: bool = False,
    ) -> None:
        """Keep the tile decoded from bytes `start:stop` of `version` of `url`: a tile needed
        again (by a later round of a batch, another batch, another job) is not decoded
        again. Only 2-D tiles (what the reader decodes) are kept. `claimed`: this job holds
        the tile's claim (`claim`), whose file is written and linked into place (a file
        created and removed per tile costs a batch as much CPU as a tenth of decoding)."""
        import numpy as np

        if array.ndim != 2:
            return
        values = np.ascontiguousarray(array)
        header = TILE_HEADER.pack(TILE_MAGIC, values.dtype.str.encode("ascii"), *values.shape)

        def write(handle: BinaryIO) -> None:
            handle.write(header)
            handle.write(values.data)

        path = self._range_path(url, version, start, stop, DECODED_SUFFIX)
        claim = self._range_path(url, version, start, stop, CLAIM_SUFFIX) if claimed else None
        self._write_entry(path, write, values.nbytes, through=claim)

    # ---- claims ---------------------------------------------------------------------------

    def claim(self, url: str, start: int, stop: int, *, version: FileVersion) -> bool:
        """Claim the fetching and decoding of the tile in bytes `start:stop`: True when this
        job is to do it (it made the claim, or took over a stale one), False when another
        job is at it."""
        path = self._range_path(url, version, start, stop, CLAIM_SUFFIX)
        for attempt in range(2):
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                return True
            except FileNotFoundError:  # the file's first entry
                if attempt:
                    return True  # cannot claim: fetch it
                path.parent.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                break
            except OSError:
                return True
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return False  # released just now: the tile is there
        if age < CLAIM_STALE_S:
            return False
        with contextlib.suppress(OSError):
            os.utime(path)
        return True

    def claimed(self, url: str, start: int, stop: int, *, version: FileVersion) -> bool:
        """Whether a job holds a claim on the tile in bytes `start:stop` (not a stale one)."""
        path = self._range_path(url, version, start, stop, CLAIM_SUFFIX)
        try:
            return time.time() - path.stat().st_mtime < CLAIM_STALE_S
        except OSError:
            return False

    def release(self, url: str, start: int, stop: int, *, version: FileVersion) -> None:
        """Give up the claim on the tile in bytes `start:stop` (kept or not)."""
        path = self._range_path(url, version, start, stop, CLAIM_SUFFIX)
        with contextlib.suppress(OSError):
            os.unlink(path)

    # ---- entries --------------------------------------------------------------------------

    def _read_entry(self, path: Path, read: Callable[[BinaryIO], T]) -> T | None:
        """`read` of the entry at `path`, None when there is none (or it does not parse);
        the entry is marked recently used (evicted last), at most every TOUCH_EVERY_S."""
        try:
            with open(path, "rb") as handle:
                value = read(handle)
            now = time.monotonic()
            if now - self._touched.get(path, -TOUCH_EVERY_S) >= TOUCH_EVERY_S:
                os.utime(path)
                self._touched[path] = now
        except (OSError, ValueError):
            return None
        return value

    def _write_entry(
        self,
        path: Path,
        write: Callable[[BinaryIO], object],
        size: int,
        through: Path | None = None,
    ) -> None:
        """Write an entry under a temporary name (or into `through`, this job's claim on it,
        which its release removes), then link it into place unless another job stored the
        same entry first (then it is not counted again): concurrent jobs never read half of
        one, and each byte is counted once. A full disk keeps nothing: the bytes are fetched
        again when needed.

        A claim is written in place, never truncated: a job that took over a stale claim
        writes the same bytes into it (the tile of one version of the file), and readers
        check an entry's length against its header."""
        handle = _open_claim(through) if through is not None else None
        temporary = None if handle is not None else path.with_name(f"{path.name}.{_writer()}.part")
        try:
            if temporary is not None:
                try:
                    handle = open(temporary, "wb")  # noqa: SIM115 (closed below)
                except FileNotFoundError:  # the file's first entry (or a job forgot the file)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    handle = open(temporary, "wb")  # noqa: SIM115
            assert handle is not None
            with handle:
                write(handle)
            os.link(temporary if temporary is not None else cast(Path, through), path)
        except FileExistsError:
            return
        except OSError as exc:
            log.info("range cache: cannot keep %d bytes (%s)", size, exc)
            return
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
        self.bytes += size
        self._uncounted += size
        if self._uncounted >= self.count_every:
            self.count()

    def count(self) -> None:
        """Add the bytes this job stored since it last counted to the cache's usage (and evict
        above the bound). Counted in steps of `count_every` bytes, not per entry: a lock and a
        rewrite of the usage file per entry cost a batch 7 % of its CPU."""
        uncounted, self._uncounted = self._uncounted, 0
        if uncounted:
            self._update(lambda: uncounted)

    # ---- size -----------------------------------------------------------------------------

    def usage(self) -> tuple[int, int]:
        """The bytes the cache holds and the most it held."""
        try:
            held, peak = (int(n) for n in (self.directory / USAGE_FILE).read_text().split())
        except (OSError, ValueError):
            return 0, 0
        return held, peak

    def _update(self, change: Callable[[], int]) -> None:
        """Run `change` (a file operation returning the bytes it added) under the usage lock,
        so that concurrent jobs count each byte once, and evict above the bound."""
        with _locked(self.directory / f"{USAGE_FILE}.lock"):
            held, peak = self.usage()
            held = max(0, held + change())
            if self.max_bytes is not None and held > self.max_bytes:
                held = self._evict(int(self.max_bytes * EVICT_TO))
            peak = max(peak, held)
            temporary = self.directory / f"{USAGE_FILE}.{_writer()}.part"
            temporary.write_text(f"{held} {peak}")
            os.replace(temporary, self.directory / USAGE_FILE)

    def _evict(self, target: int) -> int:
        """Remove the least recently used ranges until at most `target` bytes are left; return
        what is left."""
        entries = []
        for entry in _entries(self.directory):
            with contextlib.suppress(OSError):
                status = entry.stat()
                entries.append((status.st_mtime_ns, status.st_size, entry.path))
        held = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if held <= target:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                held -= size
        log.info("range cache: over its bound, %d MB left", held // 1_000_000)
        return held

    def close(self) -> None:
        """Remove a private cache (a run-wide one stays for the run's other jobs); log what the
        cache holds."""
        self.count()
        held, peak = self.usage()
        log.info(
            "range cache: this job kept %.1f MB; it holds %.1f MB, at most %.1f MB so far%s",
            self.bytes / 1e6,
            held / 1e6,
            peak / 1e6,
            f" (bound {self.max_bytes / 1e6:.0f} MB)" if self.max_bytes else "",
        )
        if self.owned:
            shutil.rmtree(self.directory, ignore_errors=True)


def remove_range_cache(directory: str | Path) -> None:
    """Remove a run-wide cache (the workflow does, when a run starts and ends)."""
    shutil.rmtree(Path(os.path.expandvars(str(directory))), ignore_errors=True)


def _entries(directory: Path) -> Iterator[os.DirEntry[str]]:
    """The cached ranges and prefixes under `directory` (a cache or one file's directory)."""
    try:
        top = list(os.scandir(directory))
    except OSError:
        return
    for entry in top:
        if entry.is_dir():
            yield from _entries(Path(entry.path))
        elif entry.name not in _BOOKKEEPING and not entry.name.endswith((".part", CLAIM_SUFFIX)):
            yield entry


def _writer() -> str:
    """Who writes a temporary file: the process and thread (two threads of one process may
    store the same entry at once)."""
    return f"{os.getpid()}-{threading.get_ident()}"


def _open_claim(claim: Path) -> BinaryIO | None:
    """This job's claim file, open for writing from its start without truncating it; None
    when it is gone (another job took it over and released it)."""
    try:
        descriptor = os.open(claim, os.O_WRONLY)
    except OSError:
        return None
    return open(descriptor, "wb", closefd=True)  # noqa: SIM115 (the caller closes it)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _read_tile(handle: BinaryIO, rows: tuple[int, int] | None = None) -> TileRows:
    """The decoded tile of an entry (`put_array`), or its `rows` (first, stop) only; ValueError
    for an entry that is not a whole one."""
    import numpy as np

    header = handle.read(TILE_HEADER.size)
    if len(header) != TILE_HEADER.size:
        raise ValueError("not a decoded tile: too short")
    magic, dtype_name, height, columns = TILE_HEADER.unpack(header)
    if magic != TILE_MAGIC:
        raise ValueError("not a decoded tile")
    dtype = np.dtype(dtype_name.rstrip(b"\0").decode("ascii"))
    # a whole entry is as long as its header says, whichever rows are read
    if os.fstat(handle.fileno()).st_size != TILE_HEADER.size + height * columns * dtype.itemsize:
        raise ValueError("not a decoded tile: not as long as its header says")
    first, stop = (0, height) if rows is None else (max(rows[0], 0), min(rows[1], height))
    count = max(stop - first, 0) * columns
    values = np.fromfile(handle, dtype, count, offset=first * columns * dtype.itemsize)
    if values.size != count:
        raise ValueError("not a decoded tile: too short")
    return TileRows(values.reshape(-1, columns), first, height)
