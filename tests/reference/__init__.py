"""Slow, obvious reference implementations used by the kernel and layer tests."""
