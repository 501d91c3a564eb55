"""Widgets the dashboard pages share."""
