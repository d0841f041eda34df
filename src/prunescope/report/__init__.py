"""prunescope.report (see docs/architecture.md)."""
