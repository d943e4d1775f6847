"""`snakemake --report`: what the HTML holds, and that it renders in headless Chromium.

The report is one self-contained HTML page: a React app whose results are embedded as data
URIs. The browser test opens a copy of it with a small script appended that clicks through
the menus as a person would (category, subcategory, the feature's "view" button), then dumps
the DOM: the image shown must be the feature's quicklook, byte for byte.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ARCHIVE_FEATURES, EMPTY_FEATURE

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=20000",  # lets the app's timers (and our clicks) run before the dump
]
# Clicks through the report like a person: `link` clicks the menu entry or breadcrumb with
# that text; `view` clicks the "eye" button of the result row whose first cell has that text.
DRIVER = """
<script>
(function () {
  const steps = %(steps)s;
  function link(text) {
    return [...document.querySelectorAll("a")].find((a) => a.textContent.trim() === text);
  }
  function viewButton(label) {
    const row = [...document.querySelectorAll("tr")].find(
      (tr) => tr.cells.length && tr.cells[0].textContent.trim() === label);
    return row && row.querySelector('a[iconname="eye"]');
  }
  function run(index, tries) {
    if (index === steps.length) { document.body.dataset.driver = "done"; return; }
    const [kind, text] = steps[index];
    const target = kind === "link" ? link(text) : viewButton(text);
    if (target) { target.click(); setTimeout(() => run(index + 1, 0), 100); }
    else if (tries < 100) { setTimeout(() => run(index, tries + 1), 50); }
    else { document.body.dataset.driver = "stuck at " + kind + " " + text; }
  }
  window.addEventListener("load", () => setTimeout(() => run(0, 0), 100));
})();
</script>
"""


@pytest.fixture(scope="module")
def report(netcdf_run, snakemake, tmp_path_factory) -> Path:
    """The report of a copy of the shared run (which stays as it is)."""
    workdir = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(netcdf_run, workdir, symlinks=True)
    snakemake(workdir, "--report", "results/report.html")
    return workdir / "results" / "report.html"


def embedded(report_html: str, variable: str) -> dict:
    """A JSON value the report embeds as `var <variable> = ...;` in its own script tag."""
    match = re.search(
        rf'<script id="{variable}">\s*var {variable} = (.*?);\s*</script>', report_html, re.S
    )
    assert match, f"no embedded {variable} in the report"
    return json.loads(match.group(1))


def data_uri_bytes(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    assert header.endswith(";base64"), header
    return base64.b64decode(payload)


def test_report_embeds_quicklooks_overview_and_summary(report):
    html = report.read_text()
    results_dir = report.parent
    categories = embedded(html, "categories")
    shown = "results/report/quicklooks/{kind}/{fid}.png"  # links to results/quicklooks/
    assert sorted(categories["Quicklooks"]["Points"]) == [
        shown.format(kind="Points", fid=fid) for fid in sorted(["p1", EMPTY_FEATURE[0]])
    ]
    assert categories["Quicklooks"]["Polygons"] == [shown.format(kind="Polygons", fid="poly")]
    assert categories["Overview"]["Other"] == ["results/overview.png"]
    assert sorted(categories["Summary"]["Other"]) == ["results/summary.csv", "results/summary.html"]

    results = embedded(html, "results")
    kinds = {"p1": "Points", "poly": "Polygons"}
    for fid in ARCHIVE_FEATURES:
        entry = results[shown.format(kind=kinds[fid], fid=fid)]
        assert (
            data_uri_bytes(entry["data_uri"])
            == (results_dir / "quicklooks" / f"{fid}.png").read_bytes()
        )
        assert entry["labels"] == {"feature": fid}
        assert "Quicklook of one feature" in entry["caption"]
    overview = results["results/overview.png"]
    assert data_uri_bytes(overview["data_uri"]) == (results_dir / "overview.png").read_bytes()
    table = data_uri_bytes(results["results/summary.html"]["data_uri"]).decode()
    assert "<table id='summary'>" in table
    assert all(f"<td>{fid}</td>" in table for fid in [*ARCHIVE_FEATURES, EMPTY_FEATURE[0]])
    summary_csv = data_uri_bytes(results["results/summary.csv"]["data_uri"])
    assert summary_csv == (results_dir / "summary.csv").read_bytes()


def find_chromium() -> str | None:
    configured = os.environ.get("SITSFLOW_CHROMIUM")
    if configured:
        return configured
    return next(filter(None, (shutil.which(name) for name in CHROMIUM_NAMES)), None)


def rendered_dom(report: Path, steps: list[tuple[str, str]], workdir: Path) -> str:
    """The DOM after the report's scripts ran and `steps` were clicked, in headless Chromium."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(
            "chromium not found (looked for chromium, chromium-browser, $SITSFLOW_CHROMIUM): "
            "run `bash tests/install_system_deps.sh` (apt-get install chromium)"
        )
    page = workdir / "driven-report.html"
    html = report.read_text()
    cut = html.rindex("</body>")
    page.write_text(html[:cut] + DRIVER % {"steps": json.dumps(steps)} + html[cut:])
    command = [
        chromium,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={workdir / 'chromium-profile'}",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    dom = result.stdout
    state = re.search(r'<body[^>]*data-driver="([^"]*)"', dom)
    assert state and state.group(1) == "done", (
        f"clicking {steps} failed: {state.group(1) if state else 'driver never ran'}"
    )
    return dom


@pytest.mark.services
def test_report_shows_a_quicklook_in_chromium(report, tmp_path):
    steps = [("link", "Quicklooks"), ("link", "Points"), ("view", "p1")]
    dom = rendered_dom(report, steps, tmp_path)
    assert "sitsflow: Sentinel-2 L2A time-series cubes" in dom  # workflow.rst, rendered by React
    shown = re.findall(r'<img[^>]*src="(data:image/png;[^"]+)"', dom)
    expected = (report.parent / "quicklooks" / "p1.png").read_bytes()
    assert any(data_uri_bytes(uri) == expected for uri in shown), (
        f"p1's quicklook is not among the {len(shown)} PNG images shown"
    )


@pytest.mark.services
def test_report_shows_the_summary_table_in_chromium(report, tmp_path):
    dom = rendered_dom(report, [("link", "Summary"), ("view", "results/summary.html")], tmp_path)
    frames = re.findall(r'<iframe[^>]*src="(data:text/html;[^"]+)"', dom)
    assert len(frames) == 1, "the summary table should be shown in a frame"
    table = data_uri_bytes(frames[0]).decode()
    assert all(f"<td>{fid}</td>" in table for fid in [*ARCHIVE_FEATURES, EMPTY_FEATURE[0]])
