"""Slicebox: right-sized slices of a pool of accelerators for deep-learning jobs."""

__version__ = "0.1.0"
