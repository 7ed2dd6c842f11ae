"""Sub-commands of ``nf``."""
