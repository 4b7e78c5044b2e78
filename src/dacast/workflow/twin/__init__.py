"""The twin application."""
