"""tapnf pipeline."""
