"""From files to a cube's arrays: reading COGs onto the feature's grid, cloud masking,
gap-filling along time and spectral indices."""
