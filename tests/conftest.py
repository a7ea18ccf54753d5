"""Shared fixtures: one local Ray cluster per test session, a `ray start --head` cluster per test that asks for
one (alone, or with worker nodes that advertise the manifests' custom resources), an S3-compatible server,
the embedded model, a tiny trainable model, the processes of a run started as a subprocess, and an offline
environment.

Tests marked `slow` start real vLLM engines (tens of seconds each on a 2-core CPU).
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest

# No hub, no telemetry: these machines reach package registries only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster (4 logical CPUs, 1 GiB object store), shut down after the session."""
    import ray

    from atheus_ray.config import RayConfig
    from atheus_ray.ray_init import init_ray

    if "RAY_ADDRESS" in os.environ:  # tests must not join a real cluster by accident
        pytest.fail("unset RAY_ADDRESS to run the tests")
    info = init_ray(RayConfig(num_cpus=4, object_store_gb=1))
    yield info
    ray.shutdown()


@pytest.fixture(scope="session")
def embedded_model() -> str:
    """The converted embedded model folder (prepared once into ATHEUS_CACHE)."""
    from atheus_ray import models

    return str(models.prepare_embedded())


@pytest.fixture(scope="session")
def tiny_model(embedded_model, tmp_path_factory) -> str:
    """A tiny random Llama with the embedded model's tokenizer: trains in seconds on CPU, loads in vLLM."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = AutoTokenizer.from_pretrained(embedded_model)
    torch.manual_seed(0)
    # head_dim 64: vLLM's CPU attention supports no smaller head (16 fails: "Unsupported CPU attention configuration")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    """A function that returns a TCP port free on 127.0.0.1 now."""
    return _free_port


def _agent_ports() -> list[str]:
    """Ports of a node's own agents: the session's local cluster holds Ray's defaults."""
    return [
        f"--{name}={_free_port()}"
        for name in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
        )
    ]


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@contextmanager
def _ray_cluster(tmp_path: Path, head_cpus: int, workers: list[dict], extra_env: dict | None = None):
    """`ray start --head` (then `ray start --address` for each of `workers`: {name, cpus, resources}), as users
    start one. Every port and the temp dir are its own; `ray start` turns token auth on (token in
    ~/.ray/auth_token), so `env` opts the CLI and drivers in. Yields `address` (GCS), `dashboard` (job server
    URL), `env`, `log` (the head's output), `nodes` ({name: log}) and `temp_dirs` (each node's, where a job's
    working_dir is unpacked); stops every node afterwards."""
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | (extra_env or {})
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # a job's `python` is this environment's
    env["RAY_AUTH_MODE"] = "token"
    port, dashboard = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's unix sockets live under it
    log = tmp_path / "head.log"
    processes, logs, temps = [], {}, [temp]
    try:
        with open(log, "wb") as out:
            # --block keeps each node in its own process group, so one signal stops it (and only it)
            processes.append(
                subprocess.Popen(
                    [
                        bin_dir / "ray",
                        "start",
                        "--head",
                        "--block",
                        f"--port={port}",
                        f"--dashboard-port={dashboard}",
                        f"--num-cpus={head_cpus}",
                        "--object-store-memory=1000000000",
                        "--include-dashboard=true",
                        "--disable-usage-stats",
                        f"--temp-dir={temp}",
                        f"--ray-client-server-port={_free_port()}",
                        *_agent_ports(),
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        url = f"http://127.0.0.1:{dashboard}"
        for _ in range(120):  # the job server answers once the dashboard is up
            assert processes[0].poll() is None, log.read_text(errors="replace")[-3000:]
            if (
                subprocess.run(
                    [bin_dir / "ray", "job", "list", f"--address={url}"], env=env, capture_output=True
                ).returncode
                == 0
            ):
                break
            time.sleep(1)
        else:
            pytest.fail(f"the head's job server did not answer in 120 s: {log.read_text(errors='replace')[-3000:]}")
        for worker in workers:  # each with a temp dir of its own, as on its own machine: nodes sharing one
            # would unpack a job's working_dir into the same folder, one under the other's feet
            temps.append(tempfile.mkdtemp(prefix=f"r{worker['name'][0]}", dir="/tmp"))
            logs[worker["name"]] = tmp_path / f"{worker['name']}.log"
            with open(logs[worker["name"]], "wb") as out:
                processes.append(
                    subprocess.Popen(
                        [
                            bin_dir / "ray",
                            "start",
                            "--block",
                            f"--address=127.0.0.1:{port}",
                            f"--num-cpus={worker['cpus']}",
                            f"--resources={json.dumps(worker['resources'])}",
                            "--object-store-memory=500000000",
                            "--disable-usage-stats",
                            f"--temp-dir={temps[-1]}",
                            *_agent_ports(),
                        ],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        want = 1 + len(workers)
        for _ in range(120):
            done = subprocess.run(
                [bin_dir / "ray", "list", "nodes", f"--address={url}", "--format=json"],
                env=env,
                capture_output=True,
                text=True,
            )
            try:  # before the head has registered, it prints "No resource in the cluster" instead of JSON
                alive = sum(n["state"] == "ALIVE" for n in json.loads(done.stdout)) if done.returncode == 0 else 0
            except ValueError:
                alive = 0
            if alive == want:
                break
            assert all(p.poll() is None for p in processes), {
                n: p.read_text(errors="replace")[-2000:] for n, p in logs.items()
            }
            time.sleep(1)
        else:
            pytest.fail(f"{want} nodes did not come up in 120 s")
        yield {
            "address": f"127.0.0.1:{port}",
            "dashboard": url,
            "env": env,
            "log": log,
            "nodes": logs,
            "temp_dirs": temps,
        }
    finally:
        for process in reversed(processes):
            _stop(process)
        for folder in temps:
            shutil.rmtree(folder, ignore_errors=True)
        current = Path("/tmp/ray/ray_current_cluster")  # `ray start` names its head here, even with --temp-dir
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()


@pytest.fixture
def ray_head(tmp_path):
    """A `ray start --head` cluster of the test's own: one node, 8 logical CPUs, a job server (see _ray_cluster)."""
    with _ray_cluster(tmp_path, head_cpus=8, workers=[]) as cluster:
        yield cluster


@pytest.fixture
def ray_two_nodes(tmp_path):
    """A head that runs nothing and two worker nodes of one CPU each (see _ray_cluster): work that has to spread
    over nodes can only run there."""
    workers = [{"name": "a", "cpus": 1, "resources": {}}, {"name": "b", "cpus": 1, "resources": {}}]
    with _ray_cluster(tmp_path, head_cpus=0, workers=workers) as cluster:
        yield cluster


# The local stand-in for cluster/raycluster.yaml: a head that runs no work, and two worker nodes that advertise
# the custom resources of its worker groups (`gen` for vLLM, Serve replicas; `train` for Ray Train workers).
WORKER_NODES = [
    {"name": "gen", "cpus": 6, "resources": {"gen": 4}},
    {"name": "train", "cpus": 2, "resources": {"train": 1}},
]


@pytest.fixture
def s3_server(free_port):
    """A real S3-compatible server (moto's server mode) on 127.0.0.1 with a bucket `atheus-test`; yields the
    standard AWS environment variables that point pyarrow, Ray Train and boto3 at it."""
    port = free_port()
    server = subprocess.Popen(
        [Path(sys.executable).parent / "moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    try:
        for _ in range(60):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="atheus-test")
        yield {"env": env, "client": client, "bucket": "atheus-test"}
    finally:
        _stop(server)


@pytest.fixture
def ray_cluster(tmp_path, s3_server):
    """A head with no CPUs and the two WORKER_NODES, every node with the S3 server's environment and the test's
    own Hugging Face hub cache (`hf_hub`: where Ray Serve LLM puts the models it downloads from S3)."""
    env = s3_server["env"] | {"HF_HUB_CACHE": str(tmp_path / "hf-hub")}
    with _ray_cluster(tmp_path, head_cpus=0, workers=WORKER_NODES, extra_env=env) as cluster:
        yield cluster | {"s3": s3_server, "hf_hub": tmp_path / "hf-hub"}


class MarkedRun:
    """The environment of a run started as a subprocess, with a marker that every process of the run inherits:
    its local Ray cluster, Ray's workers, Serve replicas and their vLLM processes. `left` lists those alive;
    `killed_when` runs a command and kills it at a moment its output or its files show (the kill tests)."""

    def __init__(self):
        value = os.urandom(8).hex()
        self.marker = f"ATHEUS_TEST_RUN={value}".encode()  # as it reads in /proc/<pid>/environ
        self.env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "ATHEUS_TEST_RUN": value}
        self.files_before = self._vllm_files()

    @staticmethod
    def _vllm_files() -> set[Path]:
        """The files vLLM's processes leave where nobody removes them: shared memory segments, rendezvous files
        and ZeroMQ sockets in the temporary folder, and the replicas' own temporary folders."""
        tmp = Path(tempfile.gettempdir())
        found = set(Path("/dev/shm").glob("psm_*")) | set(tmp.glob("vllm_dist_*")) | set(tmp.glob("atheus-replica-*"))
        return found | {p for p in tmp.iterdir() if p.is_socket()}

    def files_left(self, within: float) -> list[str]:
        """The vLLM files made since this run's environment was (see `_vllm_files`) and still there `within`
        seconds from now (none: at once)."""
        deadline = time.time() + within
        while (found := self._vllm_files() - self.files_before) and time.time() < deadline:
            time.sleep(0.5)
        return sorted(map(str, found))

    def alive(self) -> dict[int, str]:
        """pid -> command line of every live process of the run."""
        found = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if self.marker not in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    continue
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # exited, not yet reaped
                found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100]
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        return found

    def outliving(self, name: str, grace: float = 1.0, within: float = 60.0) -> list[str]:
        """The run's processes alive `grace` seconds after the last one whose command line holds `name` is gone
        (waiting `within` seconds at most for that): what survives a Serve replica, say."""
        deadline = time.time() + within
        while any(name in cmd for cmd in self.alive().values()) and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(grace)
        return self._listed({pid: cmd for pid, cmd in self.alive().items() if not cmd.startswith("ray::")})

    def left(self, within: float) -> list[str]:
        """The run's processes still alive `within` seconds from now (none: at once)."""
        deadline = time.time() + within
        while (found := self.alive()) and time.time() < deadline:
            time.sleep(0.5)
        return self._listed(found)

    def killed_when(self, cmd: list[str], ready, what: str, console: Path, sig=signal.SIGKILL) -> None:
        """Run `cmd` in a process group of its own with this run's environment (its output, unbuffered, to
        `console`), SIGKILL the group once `ready(output so far)` holds, as a crash: no clean-up. Then no vLLM
        process may outlive its Serve replica, and no process or vLLM file of the run may be left.
        `sig=signal.SIGTERM` stops it as `ray job stop` or a pod's shutdown does instead: SIGTERM to the command
        alone, which must clean up after itself and exit 143 within 90 s (a Serve replica drains for 20 s)."""
        with console.open("w") as sink:
            proc = subprocess.Popen(
                cmd,
                env=self.env | {"PYTHONUNBUFFERED": "1"},
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.time() + 600
        while not ready(console.read_text(encoding="utf-8")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, f"the run ended before {what}: {console.read_text(encoding='utf-8')[-3000:]}"
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        else:
            proc.send_signal(sig)
            try:
                status = proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise AssertionError(f"the run stopped {what} did not exit within 90 s of {sig.name}") from None
            assert status == 128 + sig, (
                f"{sig.name} {what}: exit {status}, {console.read_text(encoding='utf-8')[-3000:]}"
            )
        # without the replicas' guard, VLLM::Worker outlived its replica by 4-13 s here
        assert self.outliving("ray::ServeReplica") == [], f"vLLM processes outlived their replica ({what})"
        assert self.left(within=30) == [], f"processes of the run killed {what} still alive"
        assert self.files_left(within=15) == [], f"vLLM's files outlived the run killed {what}"

    @staticmethod
    def _listed(found: dict[int, str]) -> list[str]:
        return [f"{pid} {cmd}" for pid, cmd in sorted(found.items())]


@pytest.fixture
def marked_run():
    """A MarkedRun; whatever of it is still alive at the end is killed, so no test leaves a process behind."""
    run = MarkedRun()
    yield run
    for pid in run.alive():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _near_copies(n: int, seed: int = 0) -> list[str]:
    """n requests over made-up words (random kanji), a fifth of them near-copies of an earlier one with 1-3
    edits: unrelated requests are far apart (ROUGE-L < 0.6), near-copies close."""
    rng = random.Random(seed)
    words = ["".join(chr(0x4E00 + rng.randrange(5000)) for _ in range(rng.randint(2, 4))) for _ in range(n)]
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < 0.2:
            text = rng.choice(texts)
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(text))
                text = rng.choice(
                    [
                        text[:i] + text[i + 1 :],
                        text[:i] + chr(0x4E00 + rng.randrange(5000)) + text[i:],
                        text.replace("ください", "下さい"),
                        "あの、" + text,
                    ]
                )
        else:
            a, b, c, d, e, f = rng.sample(words, 6)
            text = f"{a}{b}の{c}{d}を{e}{f}に説明してください"
        texts.append(text)
    return texts


@pytest.fixture
def near_copies():
    """The near-duplicate test set: a function (n, seed=0) -> texts."""
    return _near_copies


def _calibrate(name: str, judge, label: str) -> tuple[int, float, float]:
    """A filter's figures on calibration/<name>.jsonl: (rows, precision, recall) of `judge(row)` against the
    row's boolean `label`, printed with the misjudged rows counted by `kind`."""
    path = Path(__file__).resolve().parent.parent / "calibration" / f"{name}.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    said = {r["id"]: bool(judge(r)) for r in rows}
    tp = sum(said[r["id"]] and r[label] for r in rows)
    fp = sum(said[r["id"]] and not r[label] for r in rows)
    fn = sum(not said[r["id"]] and r[label] for r in rows)
    wrong = Counter(r["kind"] for r in rows if said[r["id"]] != r[label])
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(
        f"{name} on {len(rows)} labeled rows: precision {precision:.3f}, recall {recall:.3f}, "
        f"wrong by kind {dict(wrong)}"
    )
    return len(rows), precision, recall


@pytest.fixture
def calibrate():
    """A filter's precision and recall on a calibration set: a function (name, judge, label) (see _calibrate)."""
    return _calibrate
