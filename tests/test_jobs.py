"""The jobs as users submit them, on the local stand-in for the manifests' cluster: a head that runs no work and
two worker nodes advertising `gen` and `train` (tests/conftest.py), every node pointed at a real S3-compatible
server on 127.0.0.1. The whole pipeline on the smallest config (embedded model, a handful of seeds and tasks)
writes to `out: s3://atheus-test/run`. It is submitted with `ray job submit` and its driver killed with SIGKILL
at three points (mid-synthesis, mid-SFT, mid-evaluation), each time submitted again; after each kill every
actor of the run goes, its Serve apps' replicas too. The last submission must finish: every table read back
from S3 with pyarrow and checked for consistency, no duplicate id, what the killed runs finished reused, the
trained models served from S3, every LLM stage, Serve replica and Ray Train worker on the node its custom
resource pins it to, SFT checkpoints (OUT/sft/checkpoints, on S3) gone once the models are exported, nothing
written to a local `s3:` folder. (No uninterrupted reference run: it would cost this test's whole run again;
the synthesis and evaluation kill tests compare with one.) Also: every job script answers --help (fast)."""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.fs
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
JOBS = ["synth", "screen", "sft", "evaluate", "pipeline"]


@pytest.mark.parametrize("job", JOBS)
def test_job_scripts_run(job):
    result = subprocess.run([sys.executable, f"jobs/{job}.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and "--config" in result.stdout


SMALLEST = [  # the local pipeline config, cut to the least that still flows through every phase
    "synth.seeds.limit=11",
    "synth.self_instruct.requests=8",
    "synth.evol.rounds=0",
    "synth.respond.sampling.max_tokens=96",
    "train.examples=4",
    "train.dev_fraction=0.25",
    "train.max_length=256",
    "train.warmup_ratio=0",  # its 2 optimizer steps both at a non-zero learning rate: the models do train
    "eval.answer.max_tokens=24",
    "eval.judge.max_tokens=48",
    "eval.resamples=200",
]
PINNED = [  # the cluster configs' placement, on the local nodes: work goes where its resource is
    "synth.engine.resources={gen: 1}",
    "eval.serve.resources={gen: 1}",
    "train.resources_per_worker={train: 1}",
    "synth.screen.dedup.on_ray_above=0",  # the near-duplicate search as Ray Data tasks on the worker nodes
]


# Ray's own detached helpers (of Ray Jobs, Ray LLM, Ray Data, Ray Train): they hold no resources and stay
CLUSTER_ACTORS = {
    "JobSupervisor",
    "TelemetryAgent",
    "_StatsActor",
    "_AutoscalingCoordinatorActor",
    "PlacementGroupCleaner",
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ray_cli(cluster: dict, *args: str, timeout: int = 1800, check: bool = True) -> subprocess.CompletedProcess:
    command = [Path(sys.executable).parent / "ray", *args]
    for _ in range(12):  # the job server can answer before the head's agent is ready to take a job
        done = subprocess.run(command, env=cluster["env"], capture_output=True, text=True, timeout=timeout)
        if "No available agent" not in done.stdout + done.stderr:
            break
        time.sleep(5)
    assert not check or done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def alive_actors(cluster: dict) -> list[str]:
    actors = json.loads(
        ray_cli(
            cluster,
            "list",
            "actors",
            f"--address={cluster['dashboard']}",
            "--format=json",
            "--filter",
            "state=ALIVE",
            "--limit=10000",
        ).stdout
    )
    return [a["class_name"] for a in actors]


def node_of_actors(cluster: dict) -> dict[str, set[str]]:
    """{actor class name: names of the nodes it ran on} for every actor the cluster has seen placed (one the
    stopped job left waiting for resources never got a node, and is left out)."""
    address = f"--address={cluster['dashboard']}"
    nodes = json.loads(ray_cli(cluster, "list", "nodes", address, "--format=json", "--detail").stdout)
    name_of = {n["node_id"]: next((r for r in ("gen", "train") if r in n["resources_total"]), "head") for n in nodes}
    actors = json.loads(
        ray_cli(cluster, "list", "actors", address, "--format=json", "--detail", "--limit=10000").stdout
    )
    found: dict[str, set[str]] = {}
    for actor in actors:
        if actor.get("node_id"):
            found.setdefault(actor["class_name"], set()).add(name_of.get(actor["node_id"], actor["node_id"]))
    return found


@pytest.mark.slow
def test_pipeline_on_a_multi_node_cluster_killed_three_times_and_resubmitted(
    tmp_path, embedded_model, ray_cluster, free_port
):
    tasks = tmp_path / "tasks.jsonl"
    sample = (REPO / "atheus_ray" / "data" / "eval_tasks_sample.jsonl").read_text(encoding="utf-8").splitlines()
    tasks.write_text("\n".join(sample[:4]) + "\n", encoding="utf-8")
    s3 = ray_cluster["s3"]
    store = pyarrow.fs.S3FileSystem(
        endpoint_override=s3["env"]["AWS_ENDPOINT_URL"], access_key="testing", secret_key="testing", region="us-east-1"
    )
    out = "s3://atheus-test/run"

    def key(uri: str) -> str:
        return uri.removeprefix("s3://")

    def exists(uri: str) -> bool:
        return store.get_file_info(key(uri)).type != pyarrow.fs.FileType.NotFound

    def data(uri: str) -> bytes:
        with store.open_input_stream(key(uri)) as f:
            return f.read()

    def text(uri: str) -> str:
        return data(uri).decode("utf-8")

    def table(uri: str, **kwargs):
        return pq.read_table(key(uri), filesystem=store, **kwargs)

    dashboard = f"--address={ray_cluster['dashboard']}"
    entrypoint = [
        "python",
        "jobs/pipeline.py",
        "--config",
        "jobs/configs/pipeline.yaml",
        "--out",
        out,
        "--set",
        f"eval.tasks=[{tasks}]",
        "--set",
        f"eval.serve.port={free_port()}",
        *(a for s in SMALLEST + PINNED for a in ("--set", s)),
    ]

    def submit(run: str, wait: bool) -> subprocess.CompletedProcess:
        return ray_cli(
            ray_cluster,
            "job",
            "submit",
            dashboard,
            f"--submission-id={run}",
            *(["--no-wait"] if not wait else []),
            "--working-dir",
            str(REPO),
            "--",
            *entrypoint,
        )

    def killed_when(run: str, ready, what: str) -> None:
        """Submit, wait until `ready()` (the run's own files on S3 show the moment), SIGKILL the driver's
        process group (the job's entrypoint, on the head): no clean-up runs. Then every actor of the run goes,
        its Serve apps' too (their reapers delete them), and the reapers themselves."""
        submit(run, wait=False)
        deadline = time.time() + 900
        while not ready() and time.time() < deadline:
            status = ray_cli(ray_cluster, "job", "status", dashboard, run, check=False).stdout
            assert not re.search(r"\b(failed|stopped|succeeded)\b", status, re.IGNORECASE), ray_cli(
                ray_cluster, "job", "logs", dashboard, run
            ).stdout[-4000:]
            time.sleep(2)
        assert ready(), f"{run}: not {what} in 15 minutes"
        [group] = {
            os.getpgid(p.pid)
            for p in psutil.process_iter(["cmdline"])
            if "jobs/pipeline.py" in (p.info["cmdline"] or []) and out in (p.info["cmdline"] or [])
        }
        os.killpg(group, signal.SIGKILL)
        deadline = time.time() + 120
        while "failed" not in ray_cli(ray_cluster, "job", "status", dashboard, run).stdout.lower():
            assert time.time() < deadline, f"{run}: the job is not failed after its driver was killed"
            time.sleep(1)
        deadline = time.time() + 120
        while left := [a for a in alive_actors(ray_cluster) if a not in CLUSTER_ACTORS]:
            assert time.time() < deadline, f"actors of the run killed {what} still alive: {left}"
            time.sleep(2)
        killed[run] = ray_cli(ray_cluster, "job", "logs", dashboard, run).stdout

    killed: dict[str, str] = {}  # run -> its console
    answers_saved = "run/eval/.answers/"
    # killed early (synthesis: its first stage done, the generator up, the next stage under way), mid-phase (SFT:
    # the first model exported, the second training) and while writing outputs (evaluation: answers saved,
    # judging under way); the same command each time, then once more to the end
    killed_when("atheus-1", lambda: exists(f"{out}/data/.stages/self_instruct_1/done.json"), "mid-synthesis")
    killed_when("atheus-2", lambda: exists(f"{out}/sft/open-SmolLM2-135M-Instruct/metrics.json"), "mid-SFT")
    killed_when(
        "atheus-3",
        lambda: s3["client"].list_objects_v2(Bucket=s3["bucket"], Prefix=answers_saved).get("KeyCount", 0) > 0,
        "mid-evaluation",
    )
    assert "[self_instruct_1] done in an earlier run" in killed["atheus-2"]
    assert "near-duplicate search on Ray" in killed["atheus-2"]  # dedup.on_ray_above=0: Ray Data on the workers
    assert len(re.findall(r"\[engine\] .* up as a Serve deployment", killed["atheus-2"])) == 1  # synth + screening
    assert "[open-SmolLM2-135M-Instruct] trained in an earlier run" in killed["atheus-3"]
    result = submit("atheus-4", wait=True)
    logs = result.stdout + result.stderr
    assert "succeeded" in logs, logs[-4000:]
    # a calm console: the run's own lines, no traceback; Ray's, vLLM's and Serve's logs went to OUT/logs/
    # (uploaded when each run ended: the stopped one too)
    assert "Traceback" not in logs and "ServeReplica" not in logs and len(logs.splitlines()) < 120, logs[-4000:]
    run_logs = [o["Key"] for o in s3["client"].list_objects_v2(Bucket=s3["bucket"], Prefix="run/logs/")["Contents"]]
    # (a killed run's log as uploaded in its last minute)
    assert len(run_logs) == 4 and all(re.fullmatch(r"run/logs/pipeline-\d{8}T\d{6}Z\.log", k) for k in run_logs)
    assert f"s3://atheus-test/{max(run_logs)}" in logs  # the console named it
    assert "ServeReplica" in text(f"s3://atheus-test/{max(run_logs)}")
    assert (
        "[self_instruct_1] done in an earlier run" in logs
        and "[atheus-SmolLM2-135M-Instruct] trained in an earlier run" in logs
    )
    assert "reused from an earlier run" in logs  # the answers the killed evaluation saved

    # the job printed where its outputs are
    assert f"The data set card is {out}/data/README.md" in logs
    assert f"{out}/eval/report.md" in logs
    # the data set: Parquet rows = the card's count = the SFT file's lines; no id twice in any table
    final = table(f"{out}/data/final").to_pylist()
    sft_lines = text(f"{out}/data/sft/train.jsonl").splitlines()
    summary = json.loads(text(f"{out}/pipeline.json"))
    assert len(final) == len(sft_lines) == summary["data"]["screen"]["rows_out"] >= 4
    assert f"{len(final)}" in text(f"{out}/data/README.md")
    assert data(f"{out}/data/charts/funnel.png")[:4] == b"\x89PNG" and exists(f"{out}/data/screen.json")
    for name in ("generated", "responses", "final"):
        ids = table(f"{out}/data/{name}", columns=["id"]).column("id").to_pylist()
        assert len(ids) == len(set(ids)), name
    assert "reject_reason" in table(f"{out}/data/rejected/heuristics").column_names
    # two trained models, exported for vLLM to S3; their checkpoints were on S3 too and are gone now
    runs = json.loads(text(f"{out}/sft/train.json"))["runs"]
    assert sorted(r["condition"] for r in runs) == ["atheus", "open"]
    for r in runs:
        assert r["export"].startswith(f"{out}/sft/") and exists(f"{r['export']}/config.json") and r["train_loss"] > 0
        assert exists(f"{r['export']}/model.safetensors") and exists(f"{out}/sft/{r['run']}/loss.png")
    keys = [o["Key"] for o in s3["client"].list_objects_v2(Bucket=s3["bucket"]).get("Contents", [])]
    assert any(k.startswith("run/sft/checkpoints/") for k in keys)  # Ray Train's run state, on S3
    assert not any("checkpoint_" in k for k in keys), keys  # finished runs keep their models, not checkpoints
    local = [REPO, tmp_path, *map(Path, ray_cluster["temp_dirs"])]  # where a job's working_dir is unpacked
    assert not [p for folder in local for p in folder.rglob("s3:*")]
    # the evaluation: 4 tasks x 2 candidates answered; every judgment accounted for; report and chart
    answers = table(f"{out}/eval/answers").to_pylist()
    assert len(answers) == 8 and {a["candidate"] for a in answers} == {"open", "atheus"}
    results = json.loads(text(f"{out}/eval/results.json"))
    [c] = results["comparisons"]
    assert c["wins"] + c["ties"] + c["losses"] + c["invalid"] + c["errors"] == 8 and c["errors"] == 0
    assert len(table(f"{out}/eval/judgments")) == 8 + 8  # pairwise in both orders, plus 1-5 scores
    assert data(f"{out}/eval/win_rates.png")[:4] == b"\x89PNG"
    # served from S3: Ray Serve LLM downloaded each export onto the `gen` node, filed under its run's fingerprint
    assert results["candidates"][0]["model"].startswith(f"{out}/sft/")
    weights = {}
    for r in runs:
        snapshot = ray_cluster["hf_hub"] / f"models--SmolLM2-135M-Instruct--{r['condition']}" / "snapshots"
        assert (snapshot / r["fingerprint"] / "model.safetensors").exists(), list(ray_cluster["hf_hub"].rglob("*"))
        weights[r["condition"]] = digest(snapshot / r["fingerprint"] / "model.safetensors")
    # both trained: their weights are neither the base model's nor each other's
    assert (
        digest(Path(embedded_model) / "model.safetensors") not in weights.values() and len(set(weights.values())) == 2
    )

    # the last run reused every stage of synthesis and screening: no generator started
    assert summary["data"]["engine"]["starts"] == 0
    # placement: every vLLM engine (the generator's and evaluation's Serve replicas) on the `gen` node, every
    # Ray Train worker on `train`
    placed = node_of_actors(ray_cluster)
    engines = {k: v for k, v in placed.items() if k.startswith("ServeReplica:atheus-engine:")}
    replicas = {k: v for k, v in placed.items() if k.startswith("ServeReplica:atheus:") and "OpenAiIngress" not in k}
    trainers = {k: v for k, v in placed.items() if k == "RayTrainWorker"}
    assert engines and replicas and trainers, sorted(placed)
    assert all(v == {"gen"} for v in (*engines.values(), *replicas.values())), (engines, replicas)
    assert trainers == {"RayTrainWorker": {"train"}}, trainers
