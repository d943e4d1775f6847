"""Options that make a demo archive differ from the kind default the way real archives do.

The default archive is kind to a reader: nearest-neighbour overviews everywhere, one item per
feature and date, a nodata tag that no pixel needs, no saturated pixel. Real Sentinel-2 archives
are not (issue 12), and a reader must be tested against what they do. Each option reproduces one
such difference and is off by default; an archive written with every option at its default is
byte-identical to one written before the options existed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

RESAMPLINGS = ("nearest", "average")
SCL_PATTERNS = ("scene", "checkerboard")


@dataclass(frozen=True)
class ArchiveOptions:
    """How a demo archive departs from the kind default; see `generate_archive` for each one."""

    overview_resampling: str = "nearest"
    scl_overview_resampling: str = "nearest"
    scl_pattern: str = "scene"
    overlapping_tiles: bool = False
    nodata_tag: bool = True
    swath_edge: bool = False
    saturated_fraction: float = 0.0

    def check(self) -> None:
        """Raise ValueError on a value the generator cannot honour."""
        for name in ("overview_resampling", "scl_overview_resampling"):
            if getattr(self, name) not in RESAMPLINGS:
                raise ValueError(
                    f"{name} must be one of {RESAMPLINGS}, got {getattr(self, name)!r}"
                )
        if self.scl_pattern not in SCL_PATTERNS:
            raise ValueError(f"scl_pattern must be one of {SCL_PATTERNS}, got {self.scl_pattern!r}")
        if not 0.0 <= self.saturated_fraction < 1.0:
            raise ValueError(
                f"saturated_fraction must be within [0, 1), got {self.saturated_fraction}"
            )

    def non_default(self) -> dict[str, str | bool | float]:
        """The options that differ from their default, for a feature's parameters.

        Only these enter the manifest, so that a default archive's manifest stays what it was,
        while changing any option (or setting it back) makes the feature's parameters differ.
        """
        default = asdict(ArchiveOptions())
        return {name: value for name, value in asdict(self).items() if value != default[name]}
