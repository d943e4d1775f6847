"""Exceptions that carry what a user needs to fix a problem: the feature and the config key."""

from __future__ import annotations


class SitsflowError(Exception):
    """Base class for errors sitsflow reports to the user (not bugs)."""


class InputError(SitsflowError):
    """Bad user input: the vector file, a feature, or a config value.

    `key` names the config key (or input) at fault; `fid` the feature, when there is one.
    """

    def __init__(self, message: str, *, key: str | None = None, fid: str | None = None):
        self.key = key
        self.fid = fid
        prefix = []
        if fid is not None:
            prefix.append(f"feature {fid!r}")
        if key is not None:
            prefix.append(f"config key {key!r}")
        super().__init__(f"[{', '.join(prefix)}] {message}" if prefix else message)


class CatalogError(SitsflowError):
    """The catalog could not be searched or returned something unusable."""


class AssetError(SitsflowError):
    """An item's asset could not be read (missing, truncated, unreachable)."""
