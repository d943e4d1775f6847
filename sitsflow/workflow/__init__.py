"""The workflow's glue: config checks, typed settings, file layout, features and their grids,
the per-feature stages and batch mode (what the rules in `rules/` call)."""
