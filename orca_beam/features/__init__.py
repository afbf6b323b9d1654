"""Features computed at inference time from what a model sees (thumbnails of its input)."""
