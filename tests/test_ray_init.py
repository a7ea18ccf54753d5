import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time


def test_local_cluster_is_sized_and_capped(ray_local):
    import ray

    assert ray_local["address"] == "local"
    assert ray_local["cpus"] == 4
    assert ray.available_resources().get("object_store_memory", 0) <= 1024**3


def test_joins_the_cluster_named_by_ray_address():
    """A driver with RAY_ADDRESS set (as under `ray job submit`) joins that cluster instead of starting one."""
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's unix sockets live under it
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # --block keeps this head in its own process group, so the test stops it (and only it) with one signal.
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--port=6399", "--num-cpus=3", "--include-dashboard=false",
         "--object-store-memory=200000000", f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    # `ray start` turns on token auth (token in ~/.ray/auth_token); a driver outside `ray job submit` opts in.
    client_env = {"RAY_ADDRESS": "127.0.0.1:6399", "RAY_AUTH_MODE": "token"}
    try:
        script = textwrap.dedent("""
            from atheus_ray.ray_init import init_ray
            info = init_ray()
            print("JOINED", info["address"], info["cpus"])
        """)
        deadline, out = time.time() + 120, ""
        while time.time() < deadline and "JOINED" not in out:
            done = subprocess.run([sys.executable, "-c", script], env={**env, **client_env},
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
            out = done.stdout + done.stderr[-2000:]
            time.sleep(1)
        assert "JOINED 127.0.0.1:6399 3.0" in out, out
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_stale_cluster_file_does_not_stop_a_local_start(tmp_path):
    """`ray start` names its head in /tmp/ray/ray_current_cluster, and a bare `ray.init()` joins whatever is named
    there; after that head is gone the file stays. Run by hand, a job starts its own cluster regardless."""
    current = "/tmp/ray/ray_current_cluster"
    saved = open(current).read() if os.path.exists(current) else None
    os.makedirs("/tmp/ray", exist_ok=True)
    with open(current, "w") as f:
        f.write("192.0.2.1:6999")  # a head that is not there
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    script = "from atheus_ray.ray_init import init_ray; print('STARTED', init_ray()['address'])"
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    finally:
        if saved is None:
            os.remove(current)
        else:
            with open(current, "w") as f:
                f.write(saved)
    assert "STARTED local" in done.stdout, done.stderr[-2000:]
