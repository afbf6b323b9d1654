"""The review page: hits (of a search, or of a classifier) as one self-contained HTML page with
a spectrogram and an audio clip per hit, verdict buttons, keyboard shortcuts and a CSV export."""
