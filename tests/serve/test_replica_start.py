"""The replica's process-group guard (atheus_ray.serve.replica_start), on real processes: a stand-in replica that
leads its group starts the guard and a child that would outlive it, then is killed alone with SIGKILL."""

import os
import signal
import subprocess
import sys
import textwrap
import time

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
