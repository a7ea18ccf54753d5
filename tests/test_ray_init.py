import os
import subprocess
import sys
import textwrap


def test_local_cluster_is_sized_and_capped(ray_local):
    import ray

    assert ray_local["address"] == "local"
    assert ray_local["cpus"] == 4
    assert ray.available_resources().get("object_store_memory", 0) <= 1024**3


def test_joins_the_cluster_named_by_ray_address(ray_head):
    """A driver with RAY_ADDRESS set (as under `ray job submit`) joins that cluster instead of starting one, and
    keeps the SIGTERM handler it had (ray.init puts in one of its own that exits with no clean-up)."""
    script = textwrap.dedent("""
        import signal
        from atheus_ray.ray_init import init_ray
        def mine(signum, frame): pass
        signal.signal(signal.SIGTERM, mine)
        info = init_ray()
        print("JOINED", info["address"], info["cpus"], "KEPT", signal.getsignal(signal.SIGTERM) is mine)
    """)
    env = {**ray_head["env"], "RAY_ADDRESS": ray_head["address"]}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert f"JOINED {ray_head['address']} 8.0 KEPT True" in done.stdout, done.stdout + done.stderr[-2000:]


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
