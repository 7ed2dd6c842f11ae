"""tapnf runtime: configuration, the I/O loop, control channel, event export, collectors."""

__version__ = "0.1.0"
