"""What a run writes: the cube files, time-series tables, quicklooks, the summary and the report
pieces."""
