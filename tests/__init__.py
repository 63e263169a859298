"""Tests of miglab; see tests/README.md for which folder a test belongs in."""
