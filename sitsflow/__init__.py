"""sitsflow: per-feature Sentinel-2 time-series cubes from a STAC catalog."""

__version__ = "0.1.0"
