"""Image tables (filled in by the image service)."""
