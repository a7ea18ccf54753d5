"""What this project adds to the start of every `ray.serve.llm` replica it deploys (a phase's engine and the
models of the Serve app), given as the replica's `callback_config`:

- **No node step where it has nothing to do.** Before its engine starts, a replica runs one Ray task on each
  node of its placement group to fetch the model onto it (ray.llm's `initialize_node`). For a model in a cloud
  bucket (`s3://`, `gs://`, ...) that task downloads it; for a local folder or a Hugging Face id it returns the
  source unchanged ("No cloud storage mirror configured"), yet it starts a new worker process that imports
  vLLM: 11-12 s of every start on 2 CPU cores, one such process per model. It is skipped for such sources.
- **No vLLM process outlives its replica.** The replica's vLLM engine runs in child processes (`EngineCore`,
  `VLLM::Worker`) in the replica's own process group. When the replica dies without stopping them (its node's
  raylet killed with the driver, a `kill -9`), they were left running, holding the model's memory (a GPU, on a
  GPU node), with nobody to stop them: Ray's own clean-up of a dead worker's process group is the raylet's
  job. A small guard process, in a session of its own, waits for the replica to go and then kills what is
  left of the replica's process group. It runs only where the replica leads its group (Ray starts each worker
  so), so it never touches a process outside it.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ray.llm._internal.common.callbacks.base import CallbackBase

# The guard: `python -c GUARD <replica pid>`, standard library only (it starts in milliseconds); the replica leads
# its group, so its pid is the group's id too. It opens
# a pidfd of the replica while the replica waits for it, then leaves the replica's children (an exiting Ray worker
# kills its own children, and would take the guard with them) and waits for the replica to exit, however it exits.
GUARD = """
import os, select, signal, sys
replica = int(sys.argv[1])
replica_exit = os.pidfd_open(replica)
if os.fork():
    os._exit(0)
select.select([replica_exit], [], [])
try:
    os.killpg(replica, signal.SIGKILL)
except (ProcessLookupError, PermissionError):
    pass
"""


def downloads(source: object) -> bool:
    """Whether ray.llm's node step downloads `source`: a URI (`s3://`, `gs://`, ...) or a mirror config."""
    return not isinstance(source, str) or "://" in source


def guard_process_group() -> bool:
    """Start the guard of this process's group (see the module docstring), if this process leads its group;
    whether it started."""
    if os.getpgid(0) != os.getpid():
        return False
    starter = subprocess.Popen(
        [sys.executable, "-c", GUARD, str(os.getpid())],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    return starter.wait() == 0  # the guard itself runs on, in the starter's child


class ReplicaStart(CallbackBase):
    """A replica callback: guards the replica's process group, and skips the node step when the model source is
    a local folder or a Hugging Face id."""

    async def on_before_node_init(self) -> None:
        global _guarded
        _guarded = _guarded or guard_process_group()
        if not downloads(self.llm_config.model_loading_config.model_source):
            self.ctx.run_init_node = False


_guarded = False  # whether this process's guard is running
CALLBACK = {"callback_class": ReplicaStart}  # an LLMConfig's callback_config
