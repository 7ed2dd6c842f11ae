"""tapnf pipeline/io."""
