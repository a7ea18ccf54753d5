"""Synthesis stages: each file is one stage over a Ray Dataset of rows of the contract (atheus_ray.rows)."""
