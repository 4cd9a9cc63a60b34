"""braid: a multipath bonding tunnel."""

__version__ = "0.1.0"
