#!/usr/bin/env bash
# Install what tests/test_pgstac.py needs, idempotently (a no-op when everything is there):
#   - Debian packages postgresql-15 and postgresql-15-postgis-3 (apt-get; root or sudo -n),
#   - the `pgstac` extra of pyproject.toml (stac-fastapi-pgstac, pypgstac[psycopg], uvicorn)
#     into the Python of $PYTHON (default .venv/bin/python), pinned by constraints.txt.
# The tests start their own throw-away cluster (tests/pgstac_server.py); the system cluster
# the Debian package creates is not used. Exits non-zero when something cannot be installed.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
PG_VERSION="${PG_VERSION:-15}"

have_postgres() {
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null &&
        compgen -G "/usr/share/postgresql/*/extension/postgis.control" >/dev/null
}

if ! have_postgres; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "install_pgstac.sh: PostgreSQL + PostGIS missing and no root/sudo to install them" >&2
        exit 1
    fi
    echo "install_pgstac.sh: installing postgresql-${PG_VERSION} and PostGIS (apt-get)"
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        "postgresql-${PG_VERSION}" "postgresql-${PG_VERSION}-postgis-3" >/dev/null
    have_postgres
fi

if ! "$PYTHON" -c "import stac_fastapi.pgstac, pypgstac, psycopg, uvicorn" 2>/dev/null; then
    echo "install_pgstac.sh: installing the pgstac extra into $PYTHON"
    "$PYTHON" -m pip install --quiet -c constraints.txt -e ".[pgstac]"
fi
echo "install_pgstac.sh: PostgreSQL + PostGIS and stac-fastapi-pgstac are installed"
