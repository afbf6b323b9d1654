"""Stand-in models and fixtures for tests and benchmarks. Product code never imports this package.
"""
