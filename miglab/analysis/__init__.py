"""Look: pandas tables and matplotlib figures built on the object tree."""

from __future__ import annotations

from miglab.analysis.frames import fields_frame, ram_frame, sections_frame

__all__ = ("fields_frame", "ram_frame", "sections_frame")
