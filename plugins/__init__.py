"""tapnf plugins."""
