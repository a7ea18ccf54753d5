"""The judge under faults: an OpenAI-compatible server on 127.0.0.1 that answers 30% of all requests with a 429,
a 500, a reply slower than the client's timeout, a body that is not JSON, or a reply without a verdict mark
(decided by a hash of the request and its attempt, so the run is the same every time). Over a whole evaluation's
judging (30 tasks: both orders, and the 1-5 scores of two candidates): no judgment lost or made twice, retries
bounded, the statistics' counts equal to the judgments table, and a rerun asks only for what was not cached."""

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq

from atheus_ray.evaluate.judge import Cache, Judge
from atheus_ray.evaluate.stats import summarize
from atheus_ray.tables import write_rows

FAULTS = ("429", "500", "slow", "garbage", "no_mark")
TIMEOUT = 1.0


class FaultyJudge(BaseHTTPRequestHandler):
    attempts: Counter = Counter()  # per request body: how many times it was sent
    faults: Counter = Counter()
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def reply(self, status: int, data: bytes, content_type: str = "application/json", **headers) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # a slow reply the client stopped waiting for
            pass

    def do_POST(self):
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.loads(raw)
        content = body["messages"][0]["content"]
        with self.lock:
            self.attempts[content] += 1
            attempt = self.attempts[content]
        draw = int(hashlib.sha256(f"{content}#{attempt}".encode()).hexdigest()[:8], 16) / 16**8
        fault = FAULTS[int(draw / 0.3 * len(FAULTS))] if draw < 0.3 else None
        with self.lock:
            self.faults[fault] += 1
        if fault == "429":
            return self.reply(429, b'{"error": {"message": "rate limited"}}', **{"Retry-After": "0"})
        if fault == "500":
            return self.reply(500, b'{"error": {"message": "internal"}}')
        if fault == "slow":
            time.sleep(TIMEOUT + 0.5)
        if fault == "garbage":
            return self.reply(200, b"<html>upstream hiccup</html>", content_type="text/html")
        absolute = "# 回答\n" in content
        text = "理由のみ。" if fault == "no_mark" else ("[[4]]" if absolute else "Bの方が良い。[[B]]")
        self.reply(200, json.dumps({"choices": [{"message": {"content": text}}]}, ensure_ascii=False).encode())


def jobs() -> list[dict]:
    tasks = [{"id": f"t{i:02d}", "input": f"問題{i}", "output": f"答え{i}", "eval_aspect": ""} for i in range(30)]
    pairwise = [
        {"task": t, "answer_a": a, "answer_b": b, "order": order, "group": "m", "len_x": 3, "len_y": 3}
        for t in tasks
        for order, (a, b) in (("XY", (f"X{t['id']}", f"Y{t['id']}")), ("YX", (f"Y{t['id']}", f"X{t['id']}")))
    ]
    scores = [
        {"task": t, "answer_a": f"{c}{t['id']}", "answer_b": None, "order": "score", "group": "m", "candidate": c}
        for c in ("X", "Y")
        for t in tasks
    ]
    return pairwise + scores


def test_judging_under_faults_loses_and_doubles_nothing(tmp_path):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FaultyJudge)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    max_retries, verdict_retries = 5, 1
    try:

        def judge() -> Judge:
            return Judge(
                url, "faulty", Cache(tmp_path / "cache"), "NO_KEY_HERE", 8, max_retries, TIMEOUT, verdict_retries, 16
            )

        work = jobs()
        first = judge()
        records = first.judge(work)
        sent = sum(FaultyJudge.attempts.values())
        again = judge()
        rerun = again.judge(work)
    finally:
        httpd.shutdown()
    print(dict(FaultyJudge.faults), f"{sent} requests for {len(work)} judgments")
    assert all(FaultyJudge.faults[f] > 0 for f in FAULTS)  # every kind of fault happened
    assert 0.2 < sum(FaultyJudge.faults[f] for f in FAULTS) / sent < 0.4
    # every judgment once, in order, with a verdict or a counted failure
    assert [(r["task_id"], r["order"], r.get("candidate")) for r in records] == [
        (j["task"]["id"], j["order"], j.get("candidate")) for j in work
    ]
    verdicts = Counter(r["verdict"] for r in records)
    assert set(verdicts) <= {"A", "B", "C", "1", "2", "3", "4", "5", "invalid", "error"}
    # retries bounded: the client's retries times the verdict retries, per judgment
    assert max(FaultyJudge.attempts.values()) <= (max_retries + 1) * (verdict_retries + 1)
    assert verdicts["B"] + verdicts["4"] >= 0.9 * len(work), verdicts
    # the table holds what the statistics count
    write_rows(records, tmp_path / "judgments")
    table = pq.read_table(tmp_path / "judgments").to_pylist()
    stats = summarize([r for r in table if r["order"] != "score"], resamples=100)
    pairwise = [r for r in records if r["order"] != "score"]
    assert stats["wins"] + stats["ties"] + stats["losses"] + stats["invalid"] + stats["errors"] == len(pairwise)
    assert stats["errors"] == sum(r["verdict"] == "error" for r in pairwise)
    # the cache holds each judgment once; a rerun asks again only for the failed ones, and gets the same verdicts
    cached = [
        json.loads(line) for part in (tmp_path / "cache").glob("*.jsonl") for line in part.read_text().splitlines()
    ]
    assert len(cached) == len({c["key"] for c in cached}) == sum(r["verdict"] != "error" for r in records)
    failed = {r["key"] for r in records if r["verdict"] == "error"}
    assert again.calls >= len(failed) and all(r["cached"] for r in rerun if r["key"] not in failed)
    assert [r["verdict"] for r in rerun if r["key"] not in failed] == [
        r["verdict"] for r in records if r["key"] not in failed
    ]
