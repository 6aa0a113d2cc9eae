"""Bulk import of members (and purchases) from CSV files: streamed, staged, merged set-based."""
