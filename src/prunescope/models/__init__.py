"""prunescope.models (see docs/architecture.md)."""
