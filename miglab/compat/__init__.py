"""Compatibility as functions on data: transforms, plans, change reports, filters."""

from __future__ import annotations

from miglab.compat import filters

__all__ = ("filters",)
