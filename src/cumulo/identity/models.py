"""Identity tables (filled in by the identity service)."""
