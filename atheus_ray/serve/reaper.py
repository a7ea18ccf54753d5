"""A Serve app that goes with the driver that deployed it, even when that driver is killed outright.

A Serve app is detached: it outlives the process that ran `serve.run`. The CLI removes its apps on a normal
exit and on SIGTERM (`ray job stop`), but a driver killed with SIGKILL (the OOM killer, a node lost, `kill -9`)
runs no clean-up, and its replicas would hold their GPUs until someone ran `serve shutdown`. So `watch(app)`,
called before the app is deployed, starts two actors of no resources:
- an anchor, an ordinary actor of the driver, on the driver's node: Ray ends it when the driver's job ends,
  however it ends;
- a reaper, detached, on the head node and named after the app (namespace `atheus`), that pings the anchor
  every second and, once the anchor is gone, deletes the app (and Serve, when no other app is left) and exits.
`release(app)` ends both when the driver removes the app itself. A reaper left from a killed driver is
replaced by the next `watch` of the same app, which first lets a deletion it began finish.
"""

from __future__ import annotations

import contextlib
import time

import ray
from ray import serve
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

NAMESPACE = "atheus"
PING_SECONDS = 1.0
HEAD = "node:__internal_head__"  # the resource only the head node has
_watched: dict[str, tuple] = {}  # app -> (reaper, anchor) started by this driver


@ray.remote(num_cpus=0)
class _Anchor:
    """Lives exactly as long as the driver that made it."""

    def ping(self) -> bool:
        return True


@ray.remote(num_cpus=0)
class _Reaper:
    """Deletes `app` once `anchor` is gone (see the module docstring)."""

    def watch(self, app: str, anchor) -> None:
        while True:
            try:
                ray.get(anchor.ping.remote(), timeout=60)
            except ray.exceptions.RayActorError:
                break
            except ray.exceptions.GetTimeoutError:  # a busy node, not a dead driver
                continue
            time.sleep(PING_SECONDS)
        with contextlib.suppress(Exception):  # already gone
            delete(app)
        ray.actor.exit_actor()


def delete(app: str) -> None:
    """Delete the app `app` and its replicas; shut Serve down too when no other app is left."""
    serve.delete(app)
    if not serve.status().applications:
        serve.shutdown()


def _name(app: str) -> str:
    return f"reaper:{app}"


def watch(app: str) -> None:
    """Make `app` go with this driver; call before deploying it."""
    deadline = time.time() + 120
    while (earlier := _reaper_of(app)) is not None and time.time() < deadline:
        ray.kill(earlier, no_restart=True)  # a reaper of an earlier driver: this driver owns the app now
        time.sleep(0.5)
    while _deleting(app) and time.time() < deadline:  # that reaper's deletion, if it began one
        time.sleep(1)
    # Both where no autoscaler removes them while the run goes on (an idle node with only these would be
    # scaled down, and a lost anchor reads as a dead driver): the anchor on the driver's node, the reaper on
    # the head.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    anchor = _Anchor.options(scheduling_strategy=here).remote()
    reaper = _Reaper.options(
        name=_name(app), namespace=NAMESPACE, lifetime="detached", resources={HEAD: 0.001}
    ).remote()
    reaper.watch.remote(app, anchor)
    _watched[app] = (reaper, anchor)


def release(app: str) -> None:
    """End `watch(app)`: the driver removes the app itself. The reaper first: it is not to see its anchor go."""
    for actor in _watched.pop(app, ()):
        with contextlib.suppress(Exception):  # already gone
            ray.kill(actor, no_restart=True)


def _reaper_of(app: str):
    try:
        return ray.get_actor(_name(app), namespace=NAMESPACE)
    except ValueError:
        return None


def _deleting(app: str) -> bool:
    try:
        status = serve.status().applications.get(app)
    except Exception:  # no Serve controller: nothing is being deleted
        return False
    return status is not None and status.status == "DELETING"
