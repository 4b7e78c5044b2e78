"""The nowcast application."""
