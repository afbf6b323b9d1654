"""Reports over a committed version: coverage per node and UTC day (coverage.csv, coverage.png),
SeaStats datapoints, and the overview map with its clusters (see docs/reports.md)."""
