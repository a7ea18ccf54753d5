"""Evaluation: candidate answers on ELYZA-style tasks, pairwise LLM judging, statistics and the report."""
