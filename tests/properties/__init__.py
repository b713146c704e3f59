"""Property-based tests: hypothesis drives the real command handlers on both backends."""
