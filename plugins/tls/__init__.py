"""tapnf plugins/tls."""
