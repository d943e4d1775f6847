"""Pieces of the Snakemake HTML report that are not figures: the summary as a table."""

from __future__ import annotations

import html

import pandas as pd

STYLE = """
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eee; }
td:first-child, td:nth-child(2) { text-align: left; }
tr.problem td { background: #fde0dd; }
"""


def summary_html(summary: pd.DataFrame, title: str = "sitsflow summary") -> str:
    """A standalone HTML page with the summary table; rows whose status is not `ok` in red.

    The Snakemake report shows HTML results in a frame, while a CSV would only be offered
    as a download: this is how `results/summary.csv` becomes a readable table.
    """
    status = summary["status"].astype(str) if "status" in summary else None
    rows = []
    for position, (_, row) in enumerate(summary.iterrows()):
        problem = status is not None and status.iloc[position] != "ok"
        cells = "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row)
        rows.append(f'<tr class="{"problem" if problem else ""}">{cells}</tr>')
    header = "".join(f"<th>{html.escape(str(column))}</th>" for column in summary.columns)
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>\n<h3>{html.escape(title)}: {len(summary)} "
        f"features</h3>\n<table id='summary'>\n<thead><tr>{header}</tr></thead>\n<tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table></body></html>\n"
    )


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
