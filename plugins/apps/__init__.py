"""tapnf plugins/apps."""
