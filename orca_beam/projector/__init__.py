"""Embedding Projector export: thumbnails, sprite geometry, and the four projector files."""
