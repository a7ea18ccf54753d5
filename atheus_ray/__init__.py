"""atheus_ray: build Japanese instruction-tuning data from curated seeds on Ray, train on it, and judge it."""

__version__ = "0.1.0"
