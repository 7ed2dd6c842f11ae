"""tapnf pipeline/tcp."""
