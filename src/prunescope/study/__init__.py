"""prunescope.study (see docs/architecture.md)."""
