"""Ray Serve: the OpenAI-compatible app that hosts candidates and a local judge."""
