"""A real STAC API for the tests: stac-fastapi-pgstac on PostgreSQL + PostGIS + pgstac.

This is the server software behind Planetary Computer's STAC API. `PgstacServer` runs it
without systemd or a system cluster: `initdb` and `pg_ctl` in a temporary directory (as the
`postgres` user when we are root, since PostgreSQL refuses to run as root), `pypgstac migrate`,
then `uvicorn stac_fastapi.pgstac.app:create_app --factory` on 127.0.0.1. Everything is removed
by `stop()`. Cold start is about 5-10 s.

Installation (Debian `postgresql-15`, `postgresql-15-postgis-3`; PyPI extra `pgstac`) is done by
`tests/install_pgstac.sh`; `ensure_installed()` runs it once when something is missing.

    with PgstacServer() as server:
        server.load(collection, items)
        pystac_client.Client.open(server.url)
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

INSTALL_SCRIPT = Path(__file__).with_name("install_pgstac.sh")
DATABASE = "pgstac"
SUPERUSER = "sitsflow"
START_TIMEOUT_S = 60.0


class NotInstallable(RuntimeError):
    """PostgreSQL, PostGIS or the Python packages are missing and could not be installed."""


def postgres_bindir() -> Path | None:
    """Directory of `initdb`/`pg_ctl` of the newest PostgreSQL with PostGIS available."""
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        version = Path(bindir).parent.name
        has_postgis = glob.glob(f"/usr/share/postgresql/{version}/extension/postgis.control")
        if Path(bindir, "initdb").exists() and has_postgis:
            return Path(bindir)
    return None


def python_packages_missing() -> list[str]:
    import importlib.util

    modules = {
        "stac_fastapi.pgstac": "stac-fastapi-pgstac",
        "pypgstac": "pypgstac",
        "psycopg": "psycopg",
        "uvicorn": "uvicorn",
    }
    missing = []
    for module, package in modules.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing.append(package)
    return missing


def ensure_installed() -> Path:
    """The PostgreSQL bin directory; runs install_pgstac.sh once if anything is missing.

    Raises NotInstallable (with the installer's output) when it is still missing afterwards.
    """
    bindir = postgres_bindir()
    if bindir and not python_packages_missing():
        return bindir
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=900,
    )
    import importlib

    importlib.invalidate_caches()
    bindir = postgres_bindir()
    missing = python_packages_missing()
    if bindir is None or missing:
        what = ["PostgreSQL with PostGIS"] if bindir is None else []
        raise NotInstallable(
            f"{' and '.join(what + missing)} not installable here (tests/install_pgstac.sh "
            f"exit {result.returncode}): {(result.stdout + result.stderr)[-1500:]}"
        )
    return bindir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_postgres_user(command: list[str]) -> list[str]:
    """Prefix to run `command` as `postgres` when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def collection_document(collection_id: str, items: list[dict]) -> dict:
    """A STAC Collection covering `items` (pgstac needs it before their items)."""
    bboxes = [item["bbox"] for item in items]
    times = sorted(item["properties"]["datetime"] for item in items)
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": collection_id,
        "description": f"{collection_id}: {len(items)} items loaded by the sitsflow tests",
        "license": "proprietary",
        "links": [],
        "extent": {
            "spatial": {
                "bbox": [
                    [
                        min(b[0] for b in bboxes),
                        min(b[1] for b in bboxes),
                        max(b[2] for b in bboxes),
                        max(b[3] for b in bboxes),
                    ]
                ]
            },
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
    }


class PgstacServer:
    """PostgreSQL + pgstac + stac-fastapi-pgstac on 127.0.0.1, in a temporary directory."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or ensure_installed()
        self.pg_port = free_port()
        self.api_port = free_port()
        self.workdir: Path | None = None
        self._api: subprocess.Popen | None = None
        self._api_log: Path | None = None
        self.started_in_s: float | None = None

    # ---- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """STAC API root."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.pg_port}/{DATABASE}"

    @property
    def data_dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "data"

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> PgstacServer:
        started = time.perf_counter()
        self.workdir = Path(tempfile.mkdtemp(prefix="sitsflow-pgstac-"))
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
        try:
            self._start_postgres()
            self._migrate()
            self._start_api()
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.perf_counter() - started
        return self

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stdout}{result.stderr}")

    def _start_postgres(self) -> None:
        assert self.workdir is not None
        self._run(
            as_postgres_user(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            )
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -k {self.workdir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            as_postgres_user(
                [
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.workdir / "postgres.log"),
                    "-o",
                    options,
                    "-w",
                    "start",
                ]
            )
        )
        import psycopg

        admin = f"postgresql://{SUPERUSER}@127.0.0.1:{self.pg_port}/postgres"
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")

    def _migrate(self) -> None:
        """`pypgstac migrate`, then pgstac's `context` setting on (numberMatched in results)."""
        import psycopg
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        with PgstacDB(dsn=self.dsn) as db:
            Migrate(db).run_migration()
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(
                "INSERT INTO pgstac.pgstac_settings (name, value) VALUES ('context', 'on') "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
            )

    def _start_api(self) -> None:
        assert self.workdir is not None
        env = {
            **os.environ,
            "PGUSER": SUPERUSER,
            "PGPASSWORD": "unused-trust-auth",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.pg_port),
            "PGDATABASE": DATABASE,
        }
        self._api_log = self.workdir / "api.log"
        with self._api_log.open("w") as log:
            self._api = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "stac_fastapi.pgstac.app:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.api_port),
                    "--log-level",
                    "warning",
                ],
                cwd=self.workdir,  # the app reads a `.env` from its working directory
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._api.poll() is not None:
                raise RuntimeError(f"stac-fastapi-pgstac exited: {self._api_log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_mgmt/ping", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"stac-fastapi-pgstac did not answer: {self._api_log.read_text()}")

    def stop(self) -> None:
        """Stop the API and PostgreSQL and remove the temporary directory (idempotent)."""
        if self._api is not None:
            self._api.terminate()
            try:
                self._api.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._api.kill()
                self._api.wait()
            self._api = None
        if self.workdir is not None:
            if (self.data_dir / "postmaster.pid").exists():
                subprocess.run(
                    as_postgres_user(
                        [
                            str(self.bindir / "pg_ctl"),
                            "-D",
                            str(self.data_dir),
                            "-m",
                            "immediate",
                            "-w",
                            "stop",
                        ]
                    ),
                    capture_output=True,
                    timeout=60,
                )
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> PgstacServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- data ----------------------------------------------------------------------------

    def load(self, collection: dict, items: list[dict]) -> None:
        """`pypgstac load`: the collection, then its items (hrefs as given: make them absolute)."""
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader, Methods

        with PgstacDB(dsn=self.dsn) as db:
            loader = Loader(db=db)
            loader.load_collections(iter([json.loads(json.dumps(collection))]), Methods.upsert)
            loader.load_items(iter(json.loads(json.dumps(items))), Methods.upsert)
