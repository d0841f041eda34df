"""prunescope.data (see docs/architecture.md)."""
