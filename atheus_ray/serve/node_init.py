"""The node step of a `ray.serve.llm` replica's start, skipped where it has nothing to do.

Before its engine starts, a `ray.serve.llm` replica runs one Ray task on each node of its placement group to
fetch the model onto it (ray.llm's `initialize_node`). For a model in a cloud bucket (`s3://`, `gs://`, ...) that
task downloads it; for a local folder or a Hugging Face id it does nothing and returns the source unchanged
(`download_model_files`: "No cloud storage mirror configured"), yet it starts a new worker process that imports
vLLM: 11-12 s of every start on 2 CPU cores, one such process per model (the evaluation starts three at once).
`LocalSource`, given as the replica's `callback_config`, skips that task for such sources and leaves the rest of
the start as it is.
"""

from __future__ import annotations

from ray.llm._internal.common.callbacks.base import CallbackBase


def downloads(source: object) -> bool:
    """Whether ray.llm's node step downloads `source`: a URI (`s3://`, `gs://`, ...) or a mirror config."""
    return not isinstance(source, str) or "://" in source


class LocalSource(CallbackBase):
    """A replica callback: no node step when the model source is a local folder or a Hugging Face id."""

    async def on_before_node_init(self) -> None:
        if not downloads(self.llm_config.model_loading_config.model_source):
            self.ctx.run_init_node = False


CALLBACK = {"callback_class": LocalSource}  # an LLMConfig's callback_config
