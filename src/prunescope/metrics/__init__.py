"""prunescope.metrics (see docs/architecture.md)."""
