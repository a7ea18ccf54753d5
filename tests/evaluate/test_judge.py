"""The pairwise judge against a fake OpenAI-compatible server on 127.0.0.1 that injects 429s, 500s,
timeouts and unreadable replies."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from atheus_ray.evaluate.judge import RUBRIC, SCORE, Cache, Judge, judgment_key, parse_verdict, prompt

SECRET = "sk-judge-test-0000"


@pytest.mark.parametrize(
    "reply,verdict",
    [
        ("Aの方が正確です。\n[[A]]", "A"),
        ("理由…\n[[B]]", "B"),
        ("優劣なし [[C]]", "C"),
        ("[[A]] と [[B]] のどちらとも言えない", None),
        ("判定: A", None),
        ("", None),
        ("[[D]]", None),
        ("[[A]]です。念のため繰り返すと [[A]]", None),  # two marks: not exactly one
    ],
)
def test_parse_verdict_is_strict(reply, verdict):
    assert parse_verdict(reply) == verdict


@pytest.mark.parametrize(
    "reply,score",
    [
        ("理由…\n[[4]]", "4"),
        ("[[5]]", "5"),
        ("[[0]]", None),
        ("[[6]]", None),
        ("[[3]] か [[4]]", None),
        ("4点", None),
        ("[[A]]", None),
    ],
)
def test_parse_score_is_strict(reply, score):
    assert parse_verdict(reply, SCORE) == score


class FakeJudge(BaseHTTPRequestHandler):
    """Behaviour by a tag in answer A: `rate` → a 429 first, `boom` → a 500 first, `slow` → the first reply
    after the client's timeout, `garbage` → no verdict twice then [[B]], `never` → never a verdict."""

    calls: dict = {}
    auth: set = set()
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][0]["content"]
        tag = text.split("# 回答A\n")[1].split("\n")[0].split(":")[0] if "# 回答A\n" in text else ""
        with self.lock:
            n = self.calls[text] = self.calls.get(text, 0) + 1
            self.auth.add(self.headers.get("Authorization"))
        if tag == "rate" and n == 1:
            return self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if tag == "boom" and n == 1:
            return self._send(500, {"error": {"message": "oops"}})
        if tag == "slow" and n == 1:
            time.sleep(1.5)
        if "# 回答\n" in text:  # an absolute judgment
            return self._send(200, {"choices": [{"message": {"content": "おおむね良い。\n[[4]]"}}]})
        if tag == "garbage" and n <= 2 or tag == "never":
            return self._send(200, {"choices": [{"message": {"content": "どちらも良いと思います。"}}]})
        return self._send(200, {"choices": [{"message": {"content": "理由を述べます。\n[[B]]"}}]})

    def _send(self, status, body, headers=None):
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server():
    FakeJudge.calls, FakeJudge.auth = {}, set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


TASK = {"id": "t1", "input": "梅雨の洗濯のコツは？", "output": "除湿機を使う。", "eval_aspect": "- 具体的なら5点"}


def jobs():
    return [
        {"task": TASK, "answer_a": f"{tag}: 回答{i}", "answer_b": "別の回答", "order": "XY"}
        for i, tag in enumerate(["ok", "rate", "boom", "slow", "garbage", "never", "ok"])
    ]


def test_no_judgment_is_lost_or_duplicated_and_retries_are_bounded(server, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    judge = Judge(
        server,
        "judge-model",
        Cache(tmp_path / "cache"),
        api_key_env="JUDGE_KEY",
        concurrency=3,
        max_retries=2,
        timeout=1.0,
        verdict_retries=2,
    )
    records = judge.judge(jobs())
    assert [r["answer_a"] for r in records] == [j["answer_a"] for j in jobs()]  # one record per job, in order
    assert [r["verdict"] for r in records] == ["B", "B", "B", "B", "B", "invalid", "B"]
    assert [r["attempts"] for r in records] == [1, 1, 1, 1, 3, 3, 1]  # verdict retries, bounded
    assert max(FakeJudge.calls.values()) <= 3  # transport retries are bounded too
    assert FakeJudge.auth == {f"Bearer {SECRET}"}
    written = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "cache").iterdir())
    cached = [json.loads(line) for line in written.splitlines()]
    assert len(cached) == len({c["key"] for c in cached}) == 7 and SECRET not in written

    again = Judge(server, "judge-model", Cache(tmp_path / "cache"), api_key_env="JUDGE_KEY")
    before = dict(FakeJudge.calls)
    rerun = again.judge(jobs())
    assert again.calls == 0 and FakeJudge.calls == before  # the cache prevents every repeat call
    assert [r["verdict"] for r in rerun] == [r["verdict"] for r in records] and all(r["cached"] for r in rerun)


def test_a_request_that_keeps_failing_is_an_error_and_is_not_cached(tmp_path):
    judge = Judge("http://127.0.0.1:9/v1", "judge-model", Cache(tmp_path / "cache"), max_retries=1, timeout=0.5)
    [record] = judge.judge(jobs()[:1])
    assert record["verdict"] == "error" and not (tmp_path / "cache").exists()


def test_an_unreadable_cache_line_is_skipped(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "part-1.jsonl").write_text(
        '{"key": "k1", "verdict": "A", "attempts": 1, "reply": "[[A]]"}\n{"key": "k2", "verd', encoding="utf-8"
    )
    assert list(Cache(tmp_path / "cache").records) == ["k1"]


def test_absolute_scores_use_their_own_prompt_and_cache_key(server, tmp_path):
    judge = Judge(server, "judge-model", Cache(tmp_path / "cache"), max_retries=1)
    pair, score = judge.judge(
        [
            {"task": TASK, "answer_a": "ok: 回答", "answer_b": "別の回答", "order": "XY"},
            {"task": TASK, "answer_a": "ok: 回答", "answer_b": None, "order": "score"},
        ]
    )
    assert (pair["verdict"], score["verdict"]) == ("B", "4") and pair["key"] != score["key"]


def test_both_prompts_carry_the_base_rubric_under_the_tasks_own(monkeypatch):
    base = RUBRIC.read_text(encoding="utf-8").strip()
    assert "過剰な拒否" in base and "最大2点" in base  # the over-refusal cap
    for text in (prompt(TASK, "回答", "別の回答"), prompt(TASK, "回答", None)):
        assert base in text and TASK["eval_aspect"] in text and text.index(base) < text.index(TASK["eval_aspect"])
    before = judgment_key(TASK, "回答", None, "judge")
    monkeypatch.setattr("atheus_ray.evaluate.judge.read_prompt", lambda path: ("x", "changed"))
    assert judgment_key(TASK, "回答", None, "judge") != before  # a new rubric is a new judgment, not a cached one


def test_the_same_judgment_twice_in_one_batch_is_asked_once(server, tmp_path):
    judge = Judge(server, "judge-model", Cache(tmp_path / "cache"))
    job = {"task": TASK, "answer_a": "ok: 同じ回答", "answer_b": "ok: 同じ回答"}
    records = judge.judge([{**job, "order": "XY"}, {**job, "order": "YX"}])
    assert judge.calls == 1 and [r["order"] for r in records] == ["XY", "YX"]
    [part] = (tmp_path / "cache").iterdir()
    assert len(part.read_text(encoding="utf-8").splitlines()) == 1
