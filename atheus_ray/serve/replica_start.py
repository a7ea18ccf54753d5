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
- **No vLLM file outlives its replica.** vLLM leaves files behind whenever its processes die without closing
  them, which is every time here (a Serve replica is killed, not asked to stop its engine): shared memory
  segments (`/dev/shm/psm_*`, its broadcast queues), ZeroMQ sockets (`$VLLM_RPC_BASE_PATH/<uuid>`) and
  torch.distributed rendezvous files (`$TMPDIR/vllm_dist_*`). A replica points the last two into a folder of its
  own (`atheus-replica-*` in the system's temporary folder); its guard notes the segments the group maps while
  the replica lives, and once the group is gone it removes them and the folder.

The same guard covers the vLLM engine actors of an `engine.kind: vllm` pass (`ray.data.llm`'s engine stage),
which Ray Data kills at the end of every pass: no callback of ours runs in them, so `vllm_plugin`, a vLLM
general plugin (the `vllm.general_plugins` entry point in pyproject.toml, which vLLM runs in each of its
processes as it starts), calls `guard_replica` where the stage's runtime env sets `ATHEUS_GUARD_VLLM=1`. Without
it, every `vllm` pass on CPU left two 160 MiB segments in /dev/shm (vLLM's CPU engine runs its model in a worker
process fed through shared memory broadcast queues).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from ray.llm._internal.common.callbacks.base import CallbackBase

# The guard: `python -c GUARD <replica pid> [<replica folder>]`, standard library only (it starts in milliseconds);
# the replica leads its group, so its pid is the group's id too. It opens a pidfd of the replica while the replica
# waits for it, then leaves the replica's children (an exiting Ray worker kills its own children, and would take the
# guard with them). Until the replica exits, however it exits, it notes every 2 s the shared memory segments that
# the group's processes map; then it kills what is left of the group and, once no process of it is left, removes
# those segments and the replica's folder.
GUARD = """
import os, select, shutil, signal, sys, time
replica = int(sys.argv[1])
folder = sys.argv[2] if len(sys.argv) > 2 else None
replica_exit = os.pidfd_open(replica)
if os.fork():
    os._exit(0)

def group():
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == replica and fields[0] != "Z":
            pids.append(pid)
    return pids

def segments():
    found = set()
    for pid in group():
        try:
            with open(f"/proc/{pid}/maps") as f:
                paths = [line.split(maxsplit=5)[5].strip() for line in f if "/dev/shm/psm_" in line]
        except OSError:
            continue
        found.update(path for path in paths if not path.endswith("(deleted)"))
    return found

owned = set()
while not select.select([replica_exit], [], [], 2.0)[0]:
    owned |= segments()
owned |= segments()
try:
    os.killpg(replica, signal.SIGKILL)
except (ProcessLookupError, PermissionError):
    pass
deadline = time.time() + 10
while group() and time.time() < deadline:
    time.sleep(0.1)
for path in owned:
    try:
        os.unlink(path)
    except OSError:
        pass
if folder:
    shutil.rmtree(folder, ignore_errors=True)
"""


def downloads(source: object) -> bool:
    """Whether ray.llm's node step downloads `source`: a URI (`s3://`, `gs://`, ...) or a mirror config."""
    return not isinstance(source, str) or "://" in source


def guard_process_group(folder: str | None = None) -> bool:
    """Start the guard of this process's group (see the module docstring), if this process leads its group;
    whether it started. The guard removes `folder` once the group is gone."""
    if os.getpgid(0) != os.getpid():
        return False
    starter = subprocess.Popen(
        [sys.executable, "-c", GUARD, str(os.getpid()), *([folder] if folder else [])],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    return starter.wait() == 0  # the guard itself runs on, in the starter's child


def own_temporary_folder() -> str:
    """Point this process's temporary files, and those of the vLLM processes it starts, into a new folder of its
    own (see the module docstring); its path. torch's compile cache stays where it was (it is kept on purpose,
    and its default is under the system's temporary folder)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir  # the replica imports torch anyway

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    folder = tempfile.mkdtemp(prefix="atheus-replica-")
    os.environ["TMPDIR"] = os.environ["VLLM_RPC_BASE_PATH"] = folder
    tempfile.tempdir = folder  # gettempdir() reads TMPDIR once, and may have read it already
    return folder


def guard_replica() -> bool:
    """In a process that leads its group (a replica): give it a temporary folder of its own and start its guard,
    once; whether its guard runs."""
    global _guarded
    _guarded = _guarded or (os.getpgid(0) == os.getpid() and guard_process_group(own_temporary_folder()))
    return _guarded


GUARD_ENV = "ATHEUS_GUARD_VLLM"  # set to 1 in the runtime env of an `engine.kind: vllm` stage


def vllm_plugin() -> None:
    """vLLM general plugin (see the module docstring): guard the process, once, where GUARD_ENV is 1 and it leads its
    group (a Ray Data engine actor, not the vLLM processes it starts); anywhere else nothing."""
    if os.environ.get(GUARD_ENV) == "1":
        guard_replica()


class ReplicaStart(CallbackBase):
    """A replica callback: gives the replica a temporary folder of its own, guards its process group, and skips
    the node step when the model source is a local folder or a Hugging Face id."""

    async def on_before_node_init(self) -> None:
        guard_replica()
        if not downloads(self.llm_config.model_loading_config.model_source):
            self.ctx.run_init_node = False


_guarded = False  # whether this process's guard is running
CALLBACK = {"callback_class": ReplicaStart}  # an LLMConfig's callback_config
