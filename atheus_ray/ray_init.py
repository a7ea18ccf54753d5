"""Connect to Ray: the cluster a job was submitted to, or a new local one sized for this machine.

Under `ray job submit` (or with `RAY_ADDRESS` / `ray.address` set) the driver joins that cluster and asks
for nothing. Otherwise a local cluster starts with `max(4, cores)` logical CPUs (stage actors and the vLLM
actor each hold one; a 2-core laptop oversubscribes, which Ray allows) and a capped object store, so a
small machine does not hand a third of its RAM to /dev/shm.

`ray.init` puts in a SIGTERM handler of its own that exits at once (for a local cluster, after killing Ray's
processes), and Ray's C++ crash handler, which sees SIGTERM first, aborts the process 3 s later: a run stopped
by `ray job stop` died with SIGABRT halfway through removing its Serve app. A handler the process set before
(the CLI's, which unwinds as Ctrl-C does and cleans up what the run started) is put back, in place of both.
"""

from __future__ import annotations

import os
import signal
import threading

import ray

from atheus_ray.config import RayConfig


def init_ray(cfg: RayConfig | None = None) -> dict:
    """Initialise Ray once per process; return a short description of where we are."""
    cfg = cfg or RayConfig()
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        handler = signal.getsignal(signal.SIGTERM)
        if address:
            ray.init(address=address)
        else:
            ray.init(
                address="local",  # a new cluster: never one a `ray start` left in /tmp/ray/ray_current_cluster
                num_cpus=cfg.num_cpus or max(4, os.cpu_count() or 1),
                object_store_memory=int(cfg.object_store_gb * 1024**3),
                include_dashboard=False,
            )
        if callable(handler) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
    resources = ray.cluster_resources()
    return {
        "address": address or "local",
        "cpus": resources.get("CPU", 0),
        "gpus": resources.get("GPU", 0),
    }
