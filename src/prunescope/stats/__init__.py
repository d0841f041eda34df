"""prunescope.stats (see docs/architecture.md)."""
