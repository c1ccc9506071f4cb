"""Feedback: card memory, the CDS Hooks feedback endpoint, repeat-alert suppression, retention and
alert analytics, on SQLite (default) or PostgreSQL."""

from __future__ import annotations

from cds.feedback.store import FeedbackStore, open_store

__all__ = ["FeedbackStore", "open_store"]
