"""The engine kinds: the OpenAI-compatible one against a fake endpoint on 127.0.0.1 (canned answers, injected
429s), `serve` and `vllm` on the embedded model with constrained decoding."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from atheus_ray.config import EngineConfig, ModelConfig, SamplingConfig, SynthConfig, load_config
from atheus_ray.engine import error_reason, generate, openai_error, openai_payload, openai_text, sampling_params

SECRET = "sk-test-not-a-real-key-1234"
TASKS = [
    "梅雨の時期に洗濯物を早く乾かす工夫を五つ挙げてください。",
    "消費税の軽減税率の仕組みを中学生向けに説明して。",
    "新入社員向けに、電話応対の基本を箇条書きでまとめてください。",
    "俳句の季語「木枯らし」を使った例句を一つ作り、意味を添えて。",
]


class FakeOpenAI(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions like a chat model would, by what the request asks for; the first call
    for each distinct conversation gets a 429 so retries are exercised."""

    seen: dict = {}
    log: list = []
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        conversation = json.dumps(body["messages"], ensure_ascii=False)
        with self.lock:
            first = conversation not in self.seen
            self.seen[conversation] = self.seen.get(conversation, 0) + 1
            self.log.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        prompt = body["messages"][-1]["content"]
        if "TOO_LONG" in prompt:  # vLLM's server, a prompt over max_model_len
            return self._send(
                400,
                {
                    "object": "error",
                    "code": 400,
                    "message": "This model's maximum context "
                    "length is 4096 tokens. However, your request has 9000 input tokens.",
                },
            )
        if "BAD_FIELD" in prompt:  # OpenAI's shape of a request error
            return self._send(400, {"error": {"message": "Unrecognized request argument", "code": 400}})
        if first:
            return self._send(429, {"error": {"message": "rate limited"}})
        return self._send(
            200,
            {
                "choices": [{"message": {"content": self._answer(body)}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7},
            },
        )

    def _answer(self, body):
        fmt = (body.get("response_format") or {}).get("json_schema", {})
        prompt = body["messages"][-1]["content"]
        if fmt.get("name") == "choice":
            return json.dumps({"answer": "異なる"}, ensure_ascii=False)
        if fmt and "tasks" in fmt["schema"]["properties"]:
            task = TASKS[sum(1 for e in self.log if "tasks" in json.dumps(e["body"].get("response_format"))) % 4]
            return json.dumps({"tasks": [{"instruction": task, "input": ""}]}, ensure_ascii=False)
        if fmt:
            parent = prompt.split("# 元の指示")[1].strip().splitlines()[0]
            return json.dumps(
                {"instruction": f"{parent}ただし、理由も添えて三百字以内で答えてください。", "input": ""},
                ensure_ascii=False,
            )
        return "はい、順を追って丁寧にご説明します。まず全体像から述べます。"

    def _send(self, status, data):
        raw = json.dumps(data, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_openai(monkeypatch):
    FakeOpenAI.seen, FakeOpenAI.log = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("ATHEUS_TEST_KEY", SECRET)
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def openai_engine(url):
    return EngineConfig(kind="openai", base_url=url, api_key_env="ATHEUS_TEST_KEY", max_retries=3, concurrency=1)


def test_payload_maps_structured_outputs_to_response_format():
    json_req = {
        "messages": [{"role": "user", "content": "x"}],
        "sampling_params": sampling_params(SamplingConfig(max_tokens=5), {"json": json.dumps({"type": "object"})}),
    }
    body = openai_payload(json_req, "gpt-4o-mini")
    assert body["model"] == "gpt-4o-mini" and body["max_tokens"] == 5
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert "structured_outputs" not in body and "repetition_penalty" not in body
    choice_req = {**json_req, "sampling_params": sampling_params(SamplingConfig(), {"choice": ["同じ", "異なる"]})}
    schema = openai_payload(choice_req, "m")["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["answer"]["enum"] == ["同じ", "異なる"]
    assert openai_text({"choices": [{"message": {"content": '{"answer": "同じ"}'}}]}, choice=True) == "同じ"
    assert openai_text({"choices": []}, choice=False) == ""


def test_generate_over_http_retries_429_and_keeps_order(ray_local, fake_openai):
    requests = [
        {
            "key": f"k{i}",
            "messages": [{"role": "user", "content": f"質問{i}"}],
            "sampling_params": sampling_params(SamplingConfig(max_tokens=16)),
        }
        for i in range(5)
    ]
    requests.append(
        {
            "key": "judge",
            "messages": [{"role": "user", "content": "同じか"}],
            "sampling_params": sampling_params(SamplingConfig(), {"choice": ["同じ", "異なる"]}),
        }
    )
    outputs = generate(requests, ModelConfig(source="fake-model"), openai_engine(fake_openai))
    assert [o["key"] for o in outputs] == [r["key"] for r in requests]
    assert outputs[0]["text"].startswith("はい") and outputs[-1]["text"] == "異なる"
    assert all((o["tokens_in"], o["tokens_out"]) == (11, 7) for o in outputs)
    assert all(count == 2 for count in FakeOpenAI.seen.values())  # one 429, one success each: no loss, no repeat
    assert {entry["auth"] for entry in FakeOpenAI.log} == {f"Bearer {SECRET}"}
    assert {entry["path"] for entry in FakeOpenAI.log} == {"/v1/chat/completions"}
    assert SECRET not in json.dumps(outputs)


def test_error_bodies_become_errors_with_their_reason():
    """A 400 body is an error naming its reason (too long → prompt_too_long), never an empty answer."""
    vllm = {"object": "error", "code": 400, "message": "This model's maximum context length is 4096 tokens."}
    assert openai_error(vllm).startswith("prompt_too_long: http 400: This model's maximum context length")
    assert openai_error({"error": {"message": "Unrecognized request argument", "code": 400}}) == (
        "http_400: Unrecognized request argument"
    )
    assert openai_error({"choices": [{"message": {"content": "はい"}}]}) is None
    assert error_reason({"error": "http_400: bad"}) == ("http_400", "bad") and error_reason({"error": None}) is None


def test_repetition_penalty_goes_where_the_endpoint_takes_it():
    request = {
        "messages": [{"role": "user", "content": "x"}],
        "sampling_params": sampling_params(SamplingConfig(repetition_penalty=1.1)),
    }
    assert openai_payload(request, "served")["repetition_penalty"] == 1.1  # vLLM's server, Serve
    assert "repetition_penalty" not in openai_payload(request, "gpt-4o-mini", repetition_penalty=False)


def test_generate_over_http_records_4xx_as_errors_and_keeps_going(ray_local, fake_openai):
    """One request too long and one bad request among good ones: each gets its error (no retry, no crash),
    the others their answers."""

    def ask(key, text):
        return {
            "key": key,
            "messages": [{"role": "user", "content": text}],
            "sampling_params": sampling_params(SamplingConfig(max_tokens=16)),
        }

    requests = [ask("a", "質問A"), ask("long", "TOO_LONG " * 3), ask("bad", "BAD_FIELD"), ask("b", "質問B")]
    outputs = generate(requests, ModelConfig(source="fake-model"), openai_engine(fake_openai))
    by_key = {o["key"]: o for o in outputs}
    assert by_key["a"]["error"] is None and by_key["a"]["text"].startswith("はい") and by_key["b"]["text"]
    assert error_reason(by_key["long"])[0] == "prompt_too_long" and by_key["long"]["text"] == ""
    assert by_key["bad"]["error"] == "http_400: Unrecognized request argument"
    assert FakeOpenAI.seen[json.dumps(requests[1]["messages"], ensure_ascii=False)] == 1  # a 400 is not retried


def test_synth_runs_end_to_end_on_an_openai_endpoint(ray_local, fake_openai, tmp_path):
    cfg = load_config(
        SynthConfig,
        "jobs/configs/synth.yaml",
        [
            f"out={tmp_path}",
            "seeds.limit=4",
            "self_instruct.requests=2",
            "evol.rounds=1",
            "engine.kind=openai",
            f"engine.base_url={fake_openai}",
            "engine.api_key_env=ATHEUS_TEST_KEY",
            "model.source=fake-model",
        ],
    )
    from atheus_ray.synth.run import synthesize

    manifest = synthesize(cfg, log=lambda m: None)
    assert manifest["counts"]["generated"] == 2 and manifest["counts"]["evolved"] == 2
    assert manifest["counts"]["responses"] == 4 and manifest["tokens_out"] > 0
    assert SECRET not in (tmp_path / "manifest.json").read_text()
    assert all(SECRET not in p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*.parquet"))


SHORT = SamplingConfig(max_tokens=24, temperature=0.0)
SCHEMA = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}


def _ask(key, text, structured=None):
    params = sampling_params(SHORT, structured) | ({"temperature": "warm"} if key == "bad" else {})
    return {"key": key, "messages": [{"role": "user", "content": text}], "sampling_params": params}


# a plain answer, JSON schema and choice decoding, a prompt over max_model_len, a request vLLM cannot take
FIRST_PASS = [
    _ask("plain", TASKS[0]),
    _ask("json", "数をJSONで答えて。", {"json": json.dumps(SCHEMA)}),
    _ask("choice", "同じ意味ですか？", {"choice": ["同じ", "異なる"]}),
    _ask("long", "長い" * 600),
    _ask("bad", "こんにちは。"),
]


def _check_first_pass(outputs: list[dict], bad_error: str) -> None:
    plain, as_json, choice, long, bad = outputs
    assert plain["text"] and plain["tokens_in"] > 0 and 0 < plain["tokens_out"] <= 24 and plain["error"] is None
    assert isinstance(json.loads(as_json["text"])["count"], int)
    assert choice["text"] in {"同じ", "異なる"}
    assert long["error"].startswith("prompt_too_long") and long["tokens_out"] == 0
    assert bad["error"].startswith(bad_error) and bad["text"] == ""  # one bad row, no crash


@pytest.mark.slow
def test_one_serve_deployment_answers_every_pass_with_its_constraints(ray_local, embedded_model, marked_run):
    """engine.kind serve: two passes, one engine start; JSON schema, choice and regex decoding, token counts and
    prompt_too_long through the deployment handle; a request that cannot be made is that row's engine_error; the
    deployment is gone after close(), and so are the files its vLLM processes made."""
    from ray import serve

    from atheus_ray.engine import Engine

    logs = []
    model = ModelConfig(source=embedded_model, max_model_len=512)
    with Engine(model, EngineConfig(kind="serve", batch_size=4), log=logs.append) as llm:
        first = llm.generate(FIRST_PASS)
        [regex] = llm.generate([_ask("regex", "1から5で採点して。", {"regex": r"\[\[[1-5]\]\]"})])
        stats = llm.stats()
        assert serve.status().applications  # up between the passes
    _check_first_pass(first, bad_error="engine_error: ValidationError")
    assert regex["text"] in {f"[[{n}]]" for n in range(1, 6)}
    assert stats["starts"] == 1 and stats["passes"] == 2 and stats["start_seconds"] > 0
    assert sum("up as a Serve deployment" in line for line in logs) == 1
    assert not serve.status().applications  # close() removed it
    assert marked_run.files_left(within=15) == [], "vLLM's files outlived the replica"


@pytest.mark.slow
def test_a_vllm_pass_leaves_cpus_for_its_light_stages_and_keeps_the_constraints(ray_local, embedded_model, marked_run):
    """engine.kind vllm on the 4-CPU local cluster: the stages around the engine ask for a quarter CPU each, so
    engine, tokenizer actors and pre/postprocess tasks fit at once (at Ray Data's 1 CPU each they held all 4 and
    a pass could hang); then a real pass with the serve kind's requests, the bad one that row's engine_error;
    the files its engine actor's vLLM processes made are gone with the actor."""
    from atheus_ray.engine import Engine, _vllm_postprocess, _vllm_preprocess, build_llm_processor

    model, engine = ModelConfig(source=embedded_model, max_model_len=512), EngineConfig(kind="vllm", batch_size=4)
    processor = build_llm_processor(model, engine, _vllm_preprocess, _vllm_postprocess)
    actors = [stage.map_batches_kwargs for stage in processor.stages.values()]
    held = sum(kwargs.get("num_cpus", 1) * kwargs["compute"].max_size for kwargs in actors)
    tasks = processor.preprocess_map_kwargs.get("num_cpus", 1) + processor.postprocess_map_kwargs.get("num_cpus", 1)
    assert held + tasks <= ray_local["cpus"], (held, tasks)

    with Engine(model, engine) as llm:
        # Arrow takes a whole pass's sampling params as one type: the bad row is a regex vLLM cannot compile
        outputs = llm.generate(FIRST_PASS[:-1] + [_ask("bad_regex", "こんにちは。", {"regex": "[[unclosed"})])
        stats = llm.stats()
    _check_first_pass(outputs, bad_error="engine_error: VLLMValidationError: Failed to transform regex")
    assert stats["starts"] == 1 and stats["passes"] == 1
    assert marked_run.files_left(within=30) == [], "vLLM's files outlived the pass's engine actor"


def test_a_deployment_that_fails_to_start_is_removed_and_the_error_kept(monkeypatch):
    from ray import serve

    from atheus_ray import engine as engine_module

    removed = []
    monkeypatch.setattr(engine_module, "_too_long", lambda requests, model: {})
    monkeypatch.setattr(
        engine_module,
        "_start_deployment",
        lambda model, engine: (_ for _ in ()).throw(RuntimeError("replica failed: out of memory")),
    )
    monkeypatch.setattr(serve, "delete", removed.append)
    llm = engine_module.Engine(ModelConfig(), EngineConfig(kind="serve"), log=lambda m: None)
    request = {"key": "k", "messages": [{"role": "user", "content": TASKS[0]}], "sampling_params": {}}
    with pytest.raises(RuntimeError, match="out of memory"):
        llm.generate([request])
    assert removed == [engine_module.SERVE_APP] and llm.deployment is None and llm.stats()["starts"] == 1
