"""tapnf pipeline/wire."""
