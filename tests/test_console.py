"""The run's console: its own lines on the terminal, everything else (Ray workers, C-level writes, tracebacks) in
OUT/logs/; a failure prints one line naming its cause and the log file, and exits 1. Each case runs a short
script in its own process, as a user runs a command, with a real local Ray cluster where workers print."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from atheus_ray import console


def run_script(tmp_path: Path, body: str, env: dict | None = None) -> subprocess.CompletedProcess:
    script = tmp_path / "run.py"
    script.write_text(
        "import os, sys\nfrom atheus_ray.config import ConfigError\nfrom atheus_ray.console import Console\n"
        + textwrap.dedent(body)
    )
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


WORK = """
import ray

@ray.remote
def noisy(fail):
    print("noise from a Ray worker")
    if fail:
        raise RuntimeError("the model folder holds no weights")
    return 1

with Console("out", "demo", verbose=VERBOSE, user_errors=(ConfigError,)) as con:
    con.say("[stage] running ...")
    os.write(1, b"C-level noise\\n")
    print("library chatter", file=sys.stderr)
    ray.init(num_cpus=1, include_dashboard=False)
    ray.get(noisy.remote(FAIL))
    import time; time.sleep(3)  # Ray forwards a worker's output to the driver within a second or so
    con.say("[stage] done: 3 rows")
print("after the run")
"""


def log_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "out" / "logs").glob("demo-*.log"))


@pytest.mark.parametrize("verbose", [False, True])
def test_a_run_prints_its_own_lines_and_logs_the_rest(tmp_path, verbose):
    done = run_script(tmp_path, WORK.replace("VERBOSE", str(verbose)).replace("FAIL", "False"))
    assert done.returncode == 0, done.stderr[-3000:]
    terminal = done.stdout + done.stderr
    assert "[stage] running ..." in terminal and "[stage] done: 3 rows" in terminal and "after the run" in terminal
    if verbose:  # everything stays on the console, as Ray prints it; no log file
        assert "noise from a Ray worker" in terminal and "C-level noise" in terminal and not log_files(tmp_path)
        return
    [log] = log_files(tmp_path)
    assert f"logs of Ray, vLLM, Serve and Ray Train: {log}" in terminal
    for noise in ("noise from a Ray worker", "C-level noise", "library chatter"):
        assert noise not in terminal
        assert noise in log.read_text()
    assert "[stage] done: 3 rows" in log.read_text()  # the run's own lines are in the log too, timed
    assert len(terminal.strip().splitlines()) == 4, terminal


def test_a_failure_prints_its_cause_and_where_the_trace_is(tmp_path):
    done = run_script(tmp_path, WORK.replace("VERBOSE", "False").replace("FAIL", "True"))
    assert done.returncode == 1
    [log] = log_files(tmp_path)
    assert "error: RuntimeError: the model folder holds no weights" in done.stderr
    assert f"the full trace is in {log}" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "after the run" not in done.stdout
    assert "Traceback" in log.read_text() and "noisy" in log.read_text()


def test_a_config_error_passes_through_to_the_cli(tmp_path):
    done = run_script(
        tmp_path,
        """
        try:
            with Console("out", "demo", user_errors=(ConfigError,)):
                raise ConfigError("train.epochs: must be at least 1")
        except ConfigError as e:
            print(f"caught: {e}")
        """,
    )
    assert done.returncode == 0 and "caught: train.epochs: must be at least 1" in done.stdout, done.stderr
    assert not (tmp_path / "out").exists()  # a refused run writes nothing, not even its log


def test_a_log_on_an_object_store_is_uploaded_when_the_run_ends(tmp_path, s3_server):
    done = run_script(
        tmp_path,
        """
        with Console("s3://atheus-test/run", "demo") as con:
            os.write(2, b"engine chatter\\n")
            con.say("summary line")
        """,
        env=s3_server["env"],
    )
    assert done.returncode == 0, done.stderr
    assert "summary line" in done.stdout and "engine chatter" not in done.stdout + done.stderr
    keys = [o["Key"] for o in s3_server["client"].list_objects_v2(Bucket="atheus-test").get("Contents", [])]
    [key] = [k for k in keys if k.startswith("run/logs/demo-")]
    assert f"s3://atheus-test/{key}" in done.stdout
    body = s3_server["client"].get_object(Bucket="atheus-test", Key=key)["Body"].read().decode()
    assert "engine chatter" in body and "summary line" in body


def test_progress_off_a_terminal_is_a_line_now_and_then(monkeypatch):
    heard = []
    monkeypatch.setattr(console.progress, "EVERY", 0.0)
    with console.progress(8, "[engine] generator", heard.append) as bar:
        for _ in range(8):
            bar.update(1, tokens=10)
    # a line per update but the last (the stage's own end line follows it), with the count, rate and, from a
    # quarter done on, the time left
    assert len(heard) == 7 and heard[0].startswith("[engine] generator: 1/8 (")
    assert "tokens/s" in heard[0] and "s left" not in heard[0]
    assert all("s left" in h for h in heard[1:]), heard


def test_a_run_killed_outright_keeps_its_log_on_the_object_store(tmp_path, s3_server):
    """`ray job stop` SIGKILLs a driver that is not gone 3 s after SIGTERM: what it logged until the last upload
    must be on the object store already."""
    done = run_script(
        tmp_path,
        """
        import time
        import atheus_ray.console as c
        c.UPLOAD_EVERY = 0.5
        with Console("s3://atheus-test/killed", "demo") as con:
            con.say("[stage] running ...")
            time.sleep(3)
            os._exit(9)  # no unwinding, no last upload
        """,
        env=s3_server["env"],
    )
    assert done.returncode == 9
    [key] = [
        o["Key"] for o in s3_server["client"].list_objects_v2(Bucket="atheus-test", Prefix="killed/logs/")["Contents"]
    ]
    assert (
        "[stage] running ..." in s3_server["client"].get_object(Bucket="atheus-test", Key=key)["Body"].read().decode()
    )
