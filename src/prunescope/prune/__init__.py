"""prunescope.prune (see docs/architecture.md)."""
