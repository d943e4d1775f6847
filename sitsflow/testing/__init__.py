"""Test and benchmark scaffolding, not used by the workflow: a local STAC API and HTTP range
server for a demo archive (the `odc.stac.testing` pattern)."""
