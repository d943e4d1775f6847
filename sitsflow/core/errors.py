"""Exceptions that carry what a user needs to fix a problem: the feature and the config key.

Every sitsflow error message starts with `[feature 'x', config key 'y']` when it is about one
feature and/or one config key, and says what to do. The last line of a failed job's log is this
message; `results/summary.csv` copies it into the feature's `error` column.
"""

from __future__ import annotations


class SitsflowError(Exception):
    """Base class for errors sitsflow reports to the user (not bugs).

    `key` names the config key (or input) at fault; `fid` the feature, when there is one.
    """

    def __init__(self, message: str, *, key: str | None = None, fid: str | None = None):
        self.key = key
        self.fid = fid
        self.message = message
        super().__init__(_with_context(message, key=key, fid=fid))


def _with_context(message: str, *, key: str | None, fid: str | None) -> str:
    prefix = []
    if fid is not None:
        prefix.append(f"feature {fid!r}")
    if key is not None:
        prefix.append(f"config key {key!r}")
    return f"[{', '.join(prefix)}] {message}" if prefix else message


class InputError(SitsflowError):
    """Bad user input: the vector file, a feature, or a config value."""


class CatalogError(SitsflowError):
    """The catalog could not be searched or returned something unusable."""


class AssetError(SitsflowError):
    """An item's asset could not be read (missing, truncated, unreachable)."""
