"""Small shared helpers (image conversion, grids)."""
