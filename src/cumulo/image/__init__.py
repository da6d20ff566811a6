"""Images (Glance v2): records and visibility, the data path, the byte store, imports, metadefs."""
