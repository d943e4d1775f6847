"""Finding the scenes: STAC searches, catalog providers (asset keys, radiometry), signing and
S3 access to the files."""
