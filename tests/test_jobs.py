"""The jobs as users submit them: `ray start --head`, then `ray job submit` of the whole pipeline on the smallest
config (embedded model, a handful of seeds and tasks), then every expected output is checked for existence and
consistency. Also: every job script answers --help (fast)."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
JOBS = ["synth", "screen", "sft", "evaluate", "pipeline"]


@pytest.mark.parametrize("job", JOBS)
def test_job_scripts_run(job):
    result = subprocess.run([sys.executable, f"jobs/{job}.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and "--config" in result.stdout


SMALLEST = [  # the local pipeline config, cut to the least that still flows through every phase
    "synth.seeds.limit=11", "synth.self_instruct.requests=6", "synth.evol.rounds=0", "synth.respond.max_tokens=96",
    "train.examples=4", "train.dev_fraction=0.25", "train.max_length=256",
    "eval.answer.max_tokens=24", "eval.judge.max_tokens=48", "eval.resamples=200",
]  # fmt: skip


@pytest.mark.slow
def test_pipeline_submitted_to_a_ray_head(tmp_path, embedded_model, ray_head, free_port):
    tasks = tmp_path / "tasks.jsonl"
    sample = (REPO / "atheus_ray" / "data" / "eval_tasks_sample.jsonl").read_text(encoding="utf-8").splitlines()
    tasks.write_text("\n".join(sample[:4]) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    submit = [Path(sys.executable).parent / "ray", "job", "submit", f"--address={ray_head['dashboard']}",
              "--working-dir", str(REPO), "--",
              "python", "jobs/pipeline.py", "--config", "jobs/configs/pipeline.yaml", "--out", str(out),
              "--set", f"eval.tasks=[{tasks}]", "--set", f"eval.serve.port={free_port()}",
              *(a for s in SMALLEST for a in ("--set", s))]  # fmt: skip
    for _ in range(12):  # the job server can answer before the head's agent is ready to take a job
        result = subprocess.run(submit, env=ray_head["env"], capture_output=True, text=True, timeout=1800)
        logs = result.stdout + result.stderr
        if "No available agent" not in logs:
            break
        time.sleep(5)
    assert result.returncode == 0 and "succeeded" in logs, logs[-4000:]

    # the job printed where its outputs are
    assert f"The data set card is {out / 'data' / 'README.md'}" in logs
    assert str(out / "eval" / "report.md") in logs
    # the data set: Parquet rows = the card's count = the SFT file's lines
    final = pq.read_table(out / "data" / "final").to_pylist()
    sft_lines = (out / "data" / "sft" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    summary = json.loads((out / "pipeline.json").read_text(encoding="utf-8"))
    assert len(final) == len(sft_lines) == summary["data"]["screen"]["rows_out"] >= 4
    assert f"{len(final)}" in (out / "data" / "README.md").read_text(encoding="utf-8")
    # two trained models, exported for vLLM
    runs = json.loads((out / "sft" / "train.json").read_text(encoding="utf-8"))["runs"]
    assert sorted(r["condition"] for r in runs) == ["atheus", "open"]
    for r in runs:
        assert (Path(r["export"]) / "config.json").exists() and r["train_loss"] > 0
    assert list((out / "sft" / "checkpoints").iterdir()) == []  # finished runs keep their models, not checkpoints
    # the evaluation: 4 tasks x 2 candidates answered; every judgment accounted for; report and chart
    answers = pq.read_table(out / "eval" / "answers").to_pylist()
    assert len(answers) == 8 and {a["candidate"] for a in answers} == {"open", "atheus"}
    results = json.loads((out / "eval" / "results.json").read_text(encoding="utf-8"))
    [c] = results["comparisons"]
    assert c["wins"] + c["ties"] + c["losses"] + c["invalid"] + c["errors"] == 8 and c["errors"] == 0
    assert len(pq.read_table(out / "eval" / "judgments")) == 8 + 8  # pairwise in both orders, plus 1-5 scores
    assert (out / "eval" / "win_rates.png").read_bytes()[:4] == b"\x89PNG"
    assert results["candidates"][0]["model"].startswith(str(out / "sft"))
