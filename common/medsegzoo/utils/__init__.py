"""Small helpers shared by every layer (atomic file writes)."""

from __future__ import annotations

from medsegzoo.utils.atomic import atomic_path, atomic_write_json, atomic_write_text

__all__ = ["atomic_path", "atomic_write_json", "atomic_write_text"]
