"""tapnf plugins/capture."""
