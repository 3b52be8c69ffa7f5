"""Batch indexing: archive -> decode -> embed -> store."""
