"""The evaluation run end to end: real vLLM (CPU) candidates on Ray Serve, asked by deployment handle, a fake
judge on 127.0.0.1 that always prefers the first slot (so the position checks must show it), the report and its
numbers."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from atheus_ray.config import EvalConfig, load_config
from atheus_ray.evaluate.run import evaluate
from atheus_ray.evaluate.tasks import SAMPLE


class FirstSlotJudge(BaseHTTPRequestHandler):
    calls = 0

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls += 1
        absolute = "# 回答\n" in body["messages"][0]["content"]
        reply = "まずまず。\n[[3]]" if absolute else "Aの方が良い。\n[[A]]"
        data = json.dumps({"choices": [{"message": {"content": reply}}]}, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.mark.slow
def test_eval_answers_judges_and_reports(ray_local, tiny_model, tmp_path):
    # the first 24 sample tasks and one whose prompt is longer than the served models' context: the replica answers it
    # with an error, which is recorded as an answer error, counted, and kept out of judging
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
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FirstSlotJudge)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        cfg = load_config(
            EvalConfig,
            "jobs/configs/eval.yaml",
            [
                f"out={tmp_path}",
                f"tasks=[{tasks}]",
                "limit=null",
                "answer.max_tokens=16",
                "serve.max_model_len=1024",
                f"candidates=[{{name: open, group: tiny, model: {tiny_model}}}, {{name: atheus, group: tiny, model: {tiny_model}}}]",
                f"judge.base_url=http://127.0.0.1:{httpd.server_address[1]}/v1",
                "judge.model=fake-judge",
                "judge.source=null",
                "judge.constrain=false",
            ],
        )
        results = evaluate(cfg, log=lambda m: None)
        calls = FirstSlotJudge.calls
        logs = []
        again = evaluate(cfg, log=logs.append)
    finally:
        httpd.shutdown()
    # one call per distinct judgment (both candidates are the same tiny model, so many answers coincide);
    # the rerun answers every one from the cache
    judgments = pq.read_table(tmp_path / "judgments").to_pylist()
    assert len(judgments) == 96  # 24 tasks x 2 orders, plus 24 x 2 absolute scores
    assert calls == len({j["key"] for j in judgments}) == FirstSlotJudge.calls and again["judge_calls"] == 0
    assert sum("reused from an earlier run" in m for m in logs) == 2  # and no candidate answered twice
    assert not any("[serve]" in m for m in logs)  # nothing left to answer, remote judge: no Serve app started
    [c] = results["comparisons"]
    assert (c["wins"], c["ties"], c["losses"], c["invalid"], c["answer_errors"]) == (24, 0, 24, 0, 1)
    assert c["win_rate"] == 0.5 and c["first_slot_rate"] == 1.0 and c["position_consistency"] == 0.0
    answers = pq.read_table(tmp_path / "answers").to_pylist()
    assert len(answers) == 50 and {a["candidate"] for a in answers} == {"open", "atheus"}
    errors = [a for a in answers if a["error"]]
    assert len(errors) == 2 and all(a["answer"] is None and a["error"].startswith("prompt_too_long") for a in errors)
    assert [(a["candidate"], a["mean"], a["scored"]) for a in results["absolute"]] == [
        ("open", 3.0, 24),
        ("atheus", 3.0, 24),
    ]
    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert saved["comparisons"] == results["comparisons"]
    assert (tmp_path / "win_rates.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "report.md").exists()


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
