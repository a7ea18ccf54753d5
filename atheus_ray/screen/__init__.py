"""Screening stages: each file is one stage over rows of the contract (atheus_ray.rows)."""
