"""The Serve app: the gate (auth, request validation) on its own, then a real deployment on CPU (slow)."""

import hashlib
import json
import urllib.error
import urllib.request

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from atheus_ray.config import ConfigError, ServeConfig, ServedModelConfig
from atheus_ray.serve.app import GatedIngress, build_app

CHAT = {"model": "a", "messages": [{"role": "user", "content": "こんにちは"}], "max_tokens": 8}


def gate_client(monkeypatch, token: str | None) -> TestClient:
    """The ingress's routes on a plain FastAPI app, with the model call replaced by an echo of the body."""
    digest = hashlib.sha256(token.encode()).hexdigest() if token else None
    models = {"a": None, "b": None}
    ingress = GatedIngress(models, models, max_request_bytes=ServeConfig().max_request_bytes, token_sha256=digest)

    async def echo(body, call_method, raw_request):
        return JSONResponse({"call": call_method, "model": body.model})

    monkeypatch.setattr(ingress, "_process_llm_request", echo)
    app = FastAPI()
    app.post("/v1/chat/completions")(ingress.chat)
    app.post("/v1/completions")(ingress.completions)
    return TestClient(app)


def test_valid_requests_reach_the_model(monkeypatch):
    client = gate_client(monkeypatch, None)
    assert client.post("/v1/chat/completions", json=CHAT).json() == {"call": "chat", "model": "a"}
    reply = client.post("/v1/completions", json={"model": "b", "prompt": "日本の首都は", "max_tokens": 4})
    assert reply.json() == {"call": "completions", "model": "b"}


@pytest.mark.parametrize(
    "body, status, named",
    [
        ({**CHAT, "messages": 3}, 400, "messages"),
        ({**CHAT, "messages": []}, 400, "messages"),
        ({**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role"),
        ({**CHAT, "messages": [{"content": "x"}]}, 400, "messages.0.role"),
        ({**CHAT, "model": "zzz"}, 404, "model"),
        ([1, 2], 400, None),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(monkeypatch, body, status, named):
    reply = gate_client(monkeypatch, None).post("/v1/chat/completions", json=body)
    assert reply.status_code == status
    error = reply.json()["error"]
    assert error["code"] == status and error["param"] == named and error["message"]


def test_an_oversize_body_gets_413_and_the_gate_keeps_serving(monkeypatch):
    client = gate_client(monkeypatch, None)
    big = {**CHAT, "messages": [{"role": "user", "content": "あ" * (2 << 20)}]}  # 6 MiB of UTF-8
    reply = client.post("/v1/chat/completions", json=big)
    assert reply.status_code == 413 and "bytes" in reply.json()["error"]["message"]
    streamed = client.post("/v1/chat/completions", content=iter([b"x" * (1 << 20)] * 5))  # no Content-Length
    assert streamed.status_code == 413
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_a_body_that_is_not_json_gets_400(monkeypatch):
    reply = gate_client(monkeypatch, None).post("/v1/chat/completions", content=b"{nope")
    assert reply.status_code == 400 and "not JSON" in reply.json()["error"]["message"]


def test_bearer_token(monkeypatch):
    client = gate_client(monkeypatch, "s3cret")
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 401
    for wrong in ("Bearer wrong", "Bearer ", "s3cret", "Basic s3cret"):
        assert client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": wrong}).status_code == 401
    reply = client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer s3cret"})
    assert reply.status_code == 200
    assert "s3cret" not in client.post("/v1/chat/completions", json=CHAT).text


def test_build_app_refuses_bad_settings(monkeypatch, tmp_path):
    monkeypatch.delenv("ATHEUS_TEST_TOKEN", raising=False)
    one = [ServedModelConfig(name="a", source=str(tmp_path))]
    with pytest.raises(ConfigError, match="unique"):
        build_app(one * 2, ServeConfig())
    with pytest.raises(ConfigError, match="min_replicas"):
        build_app(one, ServeConfig(min_replicas=2, max_replicas=1))
    with pytest.raises(ConfigError, match="ATHEUS_TEST_TOKEN"):
        build_app(one, ServeConfig(auth_token_env="ATHEUS_TEST_TOKEN"))


def _post(url: str, body, token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_the_url_names_an_address_every_node_reaches(monkeypatch):
    """0.0.0.0 → the head's IP (the one proxy is there); loopback is refused on a cluster whose nodes have other
    IPs (their Ray Data workers would get connection refused), and fine when every node shares the machine."""
    from atheus_ray.serve import app

    def cluster(*ips):
        nodes = [{"Alive": True, "NodeManagerAddress": ip, "Resources": {"CPU": 4.0}} for ip in ips]
        nodes[0]["Resources"]["node:__internal_head__"] = 1.0
        monkeypatch.setattr(
            app.ray, "nodes", lambda: nodes + [{"Alive": False, "NodeManagerAddress": "10.0.0.99", "Resources": {}}]
        )

    cluster("10.0.0.1", "10.0.0.2", "10.0.0.3")
    assert app.reachable_host("0.0.0.0") == "10.0.0.1"
    assert app.reachable_host("10.0.0.1") == "10.0.0.1"
    with pytest.raises(ConfigError, match=r"serve.host: 127.0.0.1 .* nodes at 10.0.0.2, 10.0.0.3 .* 0.0.0.0"):
        app.reachable_host("127.0.0.1")
    cluster("10.0.0.1", "10.0.0.1")  # a local multi-node cluster: one machine
    assert app.reachable_host("127.0.0.1") == "127.0.0.1"


def test_placement_pins_bundles_and_packs_tensor_parallel_replicas():
    """Serve and Ray Data: custom resources in every bundle; a replica's GPUs STRICT_PACKed on one node."""
    from atheus_ray.config import EngineConfig
    from atheus_ray.engine import placement
    from atheus_ray.serve.app import llm_config

    assert placement(EngineConfig(resources={"gen": 1})) == {"bundles": [{"CPU": 1, "gen": 1}]}
    gpu = placement(EngineConfig(accelerator="gpu", tensor_parallel_size=2, resources={"gen": 1}))
    assert gpu == {"bundles": [{"GPU": 1, "CPU": 1, "gen": 1}] * 2, "strategy": "STRICT_PACK"}
    served = llm_config(
        ServedModelConfig(name="m", source="some/model", tensor_parallel_size=2),
        ServeConfig(accelerator="gpu", resources={"gen": 1}),
    )
    assert served.placement_group_config["strategy"] == "STRICT_PACK"
    assert served.placement_group_config["bundles"] == [{"GPU": 1, "gen": 1}] * 2
    assert served.runtime_env is None


def test_a_cpu_replica_keeps_no_core_from_vllm_compute():
    """On CPU, vLLM keeps one core for its scheduler unless told not to: every CPU replica's env says so."""
    from atheus_ray.engine import runtime_env
    from atheus_ray.serve.app import llm_config

    cpu = llm_config(ServedModelConfig(name="m", source="some/model"), ServeConfig())
    assert cpu.runtime_env["env_vars"]["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0" and runtime_env("gpu") is None


def test_a_replica_skips_the_node_step_only_where_it_downloads_nothing(tmp_path, monkeypatch):
    """ray.llm's node step (a task per node that imports vLLM) downloads cloud sources only: local folders and hub
    ids skip it, s3:// keeps it; every replica, of a phase's engine and of the Serve app, carries the callback."""
    import asyncio

    from atheus_ray.config import EngineConfig, ModelConfig
    from atheus_ray.engine import deployment_config
    from atheus_ray.serve import replica_start
    from atheus_ray.serve.app import llm_config

    monkeypatch.setattr(replica_start, "guard_replica", lambda: False)  # this process is no replica

    def runs_node_step(source: str) -> bool:
        callback = replica_start.ReplicaStart(
            llm_config=llm_config(ServedModelConfig(name="m", source=source), ServeConfig())
        )
        asyncio.run(callback.on_before_node_init())
        return callback.ctx.run_init_node

    (tmp_path / "config.json").write_text("{}")
    assert [runs_node_step(s) for s in (str(tmp_path), "some/model", "s3://bucket/m")] == [False, False, True]
    assert llm_config(ServedModelConfig(name="m", source="x"), ServeConfig()).callback_config.callback_class is (
        replica_start.ReplicaStart
    )
    engine = deployment_config(ModelConfig(source="some/model"), EngineConfig())
    assert engine.callback_config.callback_class is replica_start.ReplicaStart


def test_real_deployment_answers_and_rejects(ray_local, tiny_model, monkeypatch):
    """Two models (the same tiny Llama twice) behind one app on CPU, with auth: routed by `model`."""
    from atheus_ray.serve import app

    monkeypatch.setenv("ATHEUS_TEST_TOKEN", "s3cret")
    models = [ServedModelConfig(name="open", source=tiny_model), ServedModelConfig(name="atheus", source=tiny_model)]
    settings = ServeConfig(max_model_len=512, port=8123, auth_token_env="ATHEUS_TEST_TOKEN", max_request_bytes=16384)
    url = app.start(models, settings, log=print)
    try:
        chat = {"model": "atheus", "messages": [{"role": "user", "content": "日本の首都は？"}], "max_tokens": 8}
        status, reply = _post(url + "/chat/completions", chat, "s3cret")
        assert status == 200 and reply["model"] == "atheus"
        assert isinstance(reply["choices"][0]["message"]["content"], str) and reply["usage"]["completion_tokens"] > 0
        status, reply = _post(url + "/completions", {"model": "open", "prompt": "日本の", "max_tokens": 4}, "s3cret")
        assert status == 200 and reply["model"] == "open" and reply["usage"]["completion_tokens"] > 0
        assert _post(url + "/chat/completions", {**chat, "messages": 3}, "s3cret")[0] == 400
        assert _post(url + "/chat/completions", {**chat, "max_tokens": 10**6}, "s3cret")[0] == 400  # vLLM's own check
        assert _post(url + "/chat/completions", {**chat, "model": "zzz"}, "s3cret")[0] == 404
        assert _post(url + "/chat/completions", chat)[0] == 401
        big = {**chat, "messages": [{"role": "user", "content": "あ" * 20000}]}  # 60 KB of UTF-8
        assert _post(url + "/chat/completions", big, "s3cret")[0] == 413
        assert _post(url + "/chat/completions", chat, "s3cret")[0] == 200  # the replica survived all of that
    finally:
        app.stop()
