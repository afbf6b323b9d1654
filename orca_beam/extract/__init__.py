"""The extraction's wiring: the plan against the manifest, inference per model, outcomes, the
commit and the run summary, built for whichever input source the config names. Nothing below
imports it.
"""
