"""The linear classifier: labelled windows (examples), the model (linear), its fit and metrics
(train), and applying it over a version in Beam (apply)."""
