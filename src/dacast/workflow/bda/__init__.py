"""The bda application."""
