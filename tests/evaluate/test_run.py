"""The evaluation run end to end: real vLLM (CPU) candidates on Ray Serve, asked by deployment handle, a fake
judge on 127.0.0.1 that always prefers the first slot (so the position checks must show it), the report and its
numbers, from `atheus eval` killed three times and resumed."""

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from atheus_ray.config import EvalConfig, load_config
from atheus_ray.evaluate.judge import Cache
from atheus_ray.evaluate.run import evaluate
from atheus_ray.evaluate.tasks import SAMPLE


class FirstSlotJudge(BaseHTTPRequestHandler):
    """Prefers the first slot, scores 3. After `hold_after` calls it holds every request until `release` is set
    (so a run can be killed while its judge cache is partly written)."""

    calls = 0
    hold_after = None
    release = threading.Event()

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls += 1
        if self.hold_after is not None and self.calls > self.hold_after:
            self.release.wait(timeout=300)
        absolute = "# 回答\n" in body["messages"][0]["content"]
        reply = "まずまず。\n[[3]]" if absolute else "Aの方が良い。\n[[A]]"
        data = json.dumps({"choices": [{"message": {"content": reply}}]}, ensure_ascii=False).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # a held request of a run killed meanwhile
            pass


def eval_overrides(tmp_path: Path, tiny_model: str, judge_port: int) -> list[str]:
    """The first 24 sample tasks and one whose prompt is longer than the served models' context: the replica
    answers it with an error, which is recorded as an answer error, counted, and kept out of judging."""
    tasks = tmp_path / "tasks.jsonl"
    long = {
        "input": "次の文章を要約してください。" + "梅雨の晴れ間には布団を干しましょう。" * 120,
        "output": "要約",
        "eval_aspect": "",
    }
    tasks.write_text(
        "".join(Path(SAMPLE).read_text(encoding="utf-8").splitlines(keepends=True)[:24])
        + json.dumps(long, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    return [
        f"out={tmp_path / 'eval'}",
        f"tasks=[{tasks}]",
        "limit=null",
        "answer.max_tokens=16",
        "serve.max_model_len=1024",
        f"candidates=[{{name: open, group: tiny, model: {tiny_model}}}, {{name: atheus, group: tiny, model: {tiny_model}}}]",
        f"judge.base_url=http://127.0.0.1:{judge_port}/v1",
        "judge.model=fake-judge",
        "judge.source=null",
        "judge.constrain=false",
    ]


@pytest.mark.slow
def test_eval_killed_at_three_points_resumes_answers_judges_and_reports(ray_local, tiny_model, tmp_path, marked_run):
    """`atheus eval` as a subprocess, its process group SIGKILLed while its Serve app starts, once a candidate's
    answers are saved, and while its judge cache is partly written; the same command each time, then once more
    to the end: the outputs of an uninterrupted run, nothing judged twice, no process or vLLM file left."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FirstSlotJudge)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    overrides = eval_overrides(tmp_path, tiny_model, httpd.server_address[1])
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "atheus_ray.cli", "eval", "--config", "jobs/configs/eval.yaml"]
    cmd += [a for o in overrides for a in ("--set", o)]

    def cached() -> list[dict]:
        parts = sorted(out.glob("judge_cache/*.jsonl"))
        return [json.loads(line) for p in parts for line in p.read_text(encoding="utf-8").splitlines()]

    def killed_when(ready, what: str) -> None:
        marked_run.killed_when(cmd, ready, what, tmp_path / f"console-{what}.txt")
        assert not (out / "results.json").exists() and not list(out.rglob(".*.tmp-*")), what

    try:
        killed_when(lambda text: "candidates; ray:" in text, "while its Serve app starts")
        assert not list(out.glob(".answers/*.json"))
        FirstSlotJudge.hold_after = 0  # this run judges nothing, whenever the kill comes
        killed_when(lambda text: list(out.glob(".answers/*.json")), "once answers are saved")
        assert 1 <= len(list(out.glob(".answers/*.json"))) <= 2 and not cached()
        FirstSlotJudge.hold_after = FirstSlotJudge.calls + 20
        killed_when(lambda text: cached(), "with a partly written judge cache")
        at_kill = cached()
        FirstSlotJudge.hold_after = None
        FirstSlotJudge.release.set()
        assert len(at_kill) == Cache.FLUSH_EVERY  # one part: 16 judgments kept, the rest of the run's lost
        calls = FirstSlotJudge.calls
        final = subprocess.run(cmd, env=marked_run.env, capture_output=True, text=True, timeout=900)
        assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
        final_calls = FirstSlotJudge.calls - calls
        results = json.loads((out / "results.json").read_text(encoding="utf-8"))
        logs = []
        again = evaluate(load_config(EvalConfig, "jobs/configs/eval.yaml", overrides), log=logs.append)
    finally:
        httpd.shutdown()
    # the last run made one call per judgment not cached at the kill, and said what it reused
    judgments = pq.read_table(out / "judgments").to_pylist()
    keys = {j["key"] for j in judgments}
    assert len(judgments) == 96  # 24 tasks x 2 orders, plus 24 x 2 absolute scores
    assert results["judge_calls"] == final_calls == len(keys) - len(at_kill)
    assert (
        results["judgments_reused"] == len(at_kill)
        and f"{len(at_kill)} of {len(keys)} judgments reused" in final.stdout
    )
    assert "reused from an earlier run" in final.stdout  # the answers saved before the kills
    # the cache holds every judgment once, whatever the kills cost; a finished run answers from it alone
    assert sorted(r["key"] for r in cached()) == sorted(keys)
    assert again["judge_calls"] == 0 and again["judgments_reused"] == len(keys)
    assert sum("reused from an earlier run" in m for m in logs) == 3  # both candidates' answers, every judgment
    assert not any("[serve]" in m for m in logs)  # nothing left to answer, remote judge: no Serve app started
    assert marked_run.left(within=30) == [] and marked_run.files_left(within=15) == []
    # the outputs of an uninterrupted run (its figures are fixed by the judge's preference)
    [c] = results["comparisons"]
    assert (c["wins"], c["ties"], c["losses"], c["invalid"], c["answer_errors"]) == (24, 0, 24, 0, 1)
    assert c["win_rate"] == 0.5 and c["first_slot_rate"] == 1.0 and c["position_consistency"] == 0.0
    answers = pq.read_table(out / "answers").to_pylist()
    assert len(answers) == 50 and {a["candidate"] for a in answers} == {"open", "atheus"}
    assert len({(a["task_id"], a["candidate"]) for a in answers}) == 50
    errors = [a for a in answers if a["error"]]
    assert len(errors) == 2 and all(a["answer"] is None and a["error"].startswith("prompt_too_long") for a in errors)
    assert [(a["candidate"], a["mean"], a["scored"]) for a in results["absolute"]] == [
        ("open", 3.0, 24),
        ("atheus", 3.0, 24),
    ]
    assert again["comparisons"] == results["comparisons"]
    assert (out / "win_rates.png").read_bytes()[:4] == b"\x89PNG" and (out / "report.md").exists()
    assert not list(out.rglob(".*.tmp-*"))


def test_a_finished_run_with_a_local_judge_starts_nothing(ray_local, tmp_path, monkeypatch):
    """Answers saved and every judgment cached: no Serve app (no candidate, no judge) and no judge call."""
    from atheus_ray.evaluate import run
    from atheus_ray.evaluate.judge import Cache, judgment_key
    from atheus_ray.storage import Location

    cfg = load_config(
        EvalConfig,
        "jobs/configs/eval.yaml",
        [
            f"out={tmp_path}",
            f"tasks=[{SAMPLE}]",
            "candidates=[{name: open, group: g, model: m1}, {name: atheus, group: g, model: m2}]",
        ],
    )
    tasks = run.load_tasks(cfg.tasks)[: cfg.limit]
    saved = {(c.group, c.name): run._saved_answers(c, tasks, cfg, Location(tmp_path)) for c in cfg.candidates}
    for (group, name), path in saved.items():
        answers = {t["id"]: f"{name}の答え{t['id']}" for t in tasks}
        path.write_text(json.dumps({"answers": answers, "errors": {}}, ensure_ascii=False))
    cache = Cache(tmp_path / "judge_cache")
    for jobs in run._jobs(cfg, tasks, ["g"], run._load_answers(cfg, tasks, saved)):
        for j in jobs:
            key = judgment_key(j["task"], j["answer_a"], j["answer_b"], cfg.judge.model)
            cache.put({"key": key, "verdict": "A" if j["answer_b"] else "4", "attempts": 1, "reply": "[[A]]"})
    cache.flush()
    monkeypatch.setattr(run.serve_app, "start", lambda *a, **k: pytest.fail("a Serve app was started"))
    results = run.evaluate(cfg, log=lambda m: None)
    assert results["judge_calls"] == 0 and results["comparisons"][0]["first_slot_rate"] == 1.0
    assert [s["mean"] for s in results["absolute"]] == [4.0, 4.0]


def test_a_model_retrained_into_the_same_folder_is_answered_again(tmp_path):
    """The saved answers are filed under the export's run fingerprint (its `hash` file), not only its path."""
    from atheus_ray.evaluate import run
    from atheus_ray.storage import Location

    model = tmp_path / "sft" / "atheus" / "model"
    model.mkdir(parents=True)
    cfg = load_config(
        EvalConfig,
        "jobs/configs/eval.yaml",
        [
            f"out={tmp_path}",
            f"tasks=[{SAMPLE}]",
            f"candidates=[{{name: open, group: g, model: m1}}, {{name: atheus, group: g, model: {model}}}]",
        ],
    )
    tasks = run.load_tasks(cfg.tasks)[: cfg.limit]
    atheus = next(c for c in cfg.candidates if c.name == "atheus")
    (model / "hash").write_text("run-1")
    first = run._saved_answers(atheus, tasks, cfg, Location(tmp_path))
    assert run._saved_answers(atheus, tasks, cfg, Location(tmp_path)) == first  # same weights: same answers
    (model / "hash").write_text("run-2")  # retrained: new weights in the same folder
    assert run._saved_answers(atheus, tasks, cfg, Location(tmp_path)) != first
