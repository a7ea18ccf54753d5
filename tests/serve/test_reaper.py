"""A Serve app goes with its driver (atheus_ray.serve.reaper): a driver of its own, on the session's local Ray
cluster, deploys a small app through `deploy` and is killed with SIGKILL (no clean-up runs); the app is then
deleted by its reaper. A driver that stops its app itself leaves no reaper behind."""

import signal
import subprocess
import sys
import textwrap
import time

import pytest
import ray
from ray import serve

from atheus_ray.serve import reaper

DRIVER = textwrap.dedent(
    """
    import sys, time
    import ray
    from ray import serve
    from atheus_ray.serve import app as serve_app

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Hello:
        def __call__(self, request):
            return "hello"

    ray.init(address=sys.argv[1])
    serve.start(proxy_location="Disabled")
    serve_app.deploy(Hello.bind(), sys.argv[2], None, "the hello app")
    print("up", flush=True)
    if sys.argv[3] == "stop":
        serve_app.stop(sys.argv[2])
        print("stopped", flush=True)
    else:
        time.sleep(600)
    """
)


def driver(app: str, then: str) -> subprocess.Popen:
    address = ray.get_runtime_context().gcs_address
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, address, app, then], stdout=subprocess.PIPE, text=True, start_new_session=True
    )


def said(proc: subprocess.Popen, until: str) -> list[str]:
    """The driver's own words ("up", "stopped") up to `until`, or to its exit; Ray's and vLLM's lines left out."""
    words = []
    while until not in words and (line := proc.stdout.readline()):
        words += [line.strip()] if line.strip() in ("up", "stopped") else []
    return words


def applications() -> dict:
    try:
        return serve.status().applications
    except Exception:  # the reaper shut Serve down with the last app
        return {}


@pytest.mark.slow
def test_a_killed_drivers_app_is_deleted_and_a_stopped_one_leaves_no_reaper(ray_local):
    killed = driver("reaped", "sleep")
    assert said(killed, "up") == ["up"]
    assert "reaped" in applications() and reaper._reaper_of("reaped") is not None
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    deadline = time.time() + 60
    while ("reaped" in applications() or reaper._reaper_of("reaped") is not None) and time.time() < deadline:
        time.sleep(0.5)
    assert "reaped" not in applications(), "the killed driver's app is still up"
    assert reaper._reaper_of("reaped") is None, "the reaper did not exit"

    stopped = driver("stopped", "stop")
    assert said(stopped, "stopped") == ["up", "stopped"] and stopped.wait(timeout=60) == 0
    deadline = time.time() + 10  # ray.kill is asynchronous: the name goes a moment later
    while reaper._reaper_of("stopped") is not None and time.time() < deadline:
        time.sleep(0.2)
    assert "stopped" not in applications() and reaper._reaper_of("stopped") is None
