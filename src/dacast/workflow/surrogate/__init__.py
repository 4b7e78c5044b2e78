"""The surrogate application."""
