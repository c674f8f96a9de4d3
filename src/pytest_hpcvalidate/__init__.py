"""pytest-hpcvalidate: layered, test-first validation of HPC clusters as a pytest plugin."""

__version__ = "0.1.0"
