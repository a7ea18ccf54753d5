"""Supervised fine-tuning on Ray Train: data conditions, chat formatting with assistant-only loss, packing."""
