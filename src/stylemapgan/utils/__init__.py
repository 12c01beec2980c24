"""Small shared helpers with no stylemapgan imports above them: images (conversions, grids, RGB, colours),
atomic file writes, safetensors metadata, the TF32 switch."""
