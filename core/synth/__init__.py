"""Synthetic video archives with known answers: drawn scenes, H.264 videos, QVHighlights jsonl."""
