"""prunescope.train (see docs/architecture.md)."""
