"""The replica's process-group guard (atheus_ray.serve.replica_start), on real processes: a stand-in replica that
leads its group starts the guard and a child that would outlive it, then is killed alone with SIGKILL."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPLICA = textwrap.dedent(
    """
    import subprocess, sys, time
    from atheus_ray.serve.replica_start import guard_process_group
    guarded = guard_process_group()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # as vLLM's EngineCore
    print(guarded, child.pid, flush=True)
    time.sleep(600)
    """
)


def test_a_killed_replica_takes_its_process_group_with_it(marked_run):
    replica = subprocess.Popen(
        [sys.executable, "-c", REPLICA], stdout=subprocess.PIPE, text=True, env=marked_run.env, start_new_session=True
    )
    guarded, child = replica.stdout.readline().split()
    assert guarded == "True" and os.getpgid(int(child)) == replica.pid
    guards = [pid for pid in marked_run.alive() if pid not in (replica.pid, int(child))]
    assert len(guards) == 1 and os.getpgid(guards[0]) != replica.pid  # the guard, in a session of its own
    time.sleep(1.0)
    assert int(child) in marked_run.alive(), "the guard killed the group while the replica was alive"
    os.kill(replica.pid, signal.SIGKILL)  # the replica alone, as a dead raylet leaves its workers' children
    replica.wait(timeout=10)
    assert marked_run.left(within=5) == [], "a child of the killed replica, or its guard, is still running"


def test_no_guard_where_the_process_does_not_lead_its_group():
    """pytest does not lead a group of its own here: the guard would kill processes that are not the replica's."""
    code = "from atheus_ray.serve.replica_start import guard_process_group; print(guard_process_group())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# As a replica's vLLM processes leave their files: a child that maps a shared memory segment (vLLM's broadcast
# queue, which nobody unlinks when its processes are killed) and writes a socket and a rendezvous file where vLLM
# puts them (VLLM_RPC_BASE_PATH, the temporary folder).
VLLM_CHILD = textwrap.dedent(
    """
    import os, socket, tempfile, time
    from multiprocessing import resource_tracker, shared_memory
    segment = shared_memory.SharedMemory(create=True, size=4096)
    resource_tracker.unregister(segment._name, "shared_memory")
    ipc = socket.socket(socket.AF_UNIX)
    ipc.bind(os.path.join(os.environ["VLLM_RPC_BASE_PATH"], "0c1d"))
    open(os.path.join(tempfile.gettempdir(), "vllm_dist_0c1d"), "w").close()
    print(segment.name, tempfile.gettempdir(), flush=True)
    time.sleep(600)
    """
)
FILES_REPLICA = textwrap.dedent(
    """
    import subprocess, sys, time
    from atheus_ray.serve.replica_start import guard_replica
    guarded = guard_replica()
    print(guarded, flush=True)
    subprocess.Popen([sys.executable, "-c", sys.argv[1]])
    time.sleep(600)
    """
)


def test_a_killed_replica_leaves_no_vllm_file_behind(marked_run):
    replica = subprocess.Popen(
        [sys.executable, "-c", FILES_REPLICA, VLLM_CHILD],
        stdout=subprocess.PIPE,
        text=True,
        env=marked_run.env,
        start_new_session=True,
    )
    guarded = replica.stdout.readline().strip()
    segment, folder = replica.stdout.readline().split()
    segment = Path("/dev/shm") / segment
    assert guarded == "True" and Path(folder).name.startswith("atheus-replica-")
    assert {p.name for p in Path(folder).iterdir()} == {"0c1d", "vllm_dist_0c1d"} and segment.exists()
    time.sleep(2.5)  # the guard notes the group's segments every 2 s
    os.kill(replica.pid, signal.SIGKILL)
    replica.wait(timeout=10)
    assert marked_run.left(within=5) == []
    deadline = time.time() + 5  # the guard removes the files once the last process of the group is gone
    while (Path(folder).exists() or segment.exists()) and time.time() < deadline:
        time.sleep(0.1)
    assert not Path(folder).exists(), "the replica's temporary folder is left"
    assert not segment.exists(), "the group's shared memory segment is left"
