"""Shared widgets for the panels."""
