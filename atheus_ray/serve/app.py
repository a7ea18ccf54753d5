"""Ray Serve: every model behind one OpenAI-compatible app, routed by the request's `model` field.

    atheus serve --config jobs/configs/serve.yaml          # blocks; prints the URL and the model ids
    serve run atheus_ray.serve.app:app_builder config=jobs/configs/cluster/serve.yaml   # or a RayService

Each model is a `ray.serve.llm` deployment (vLLM) with its own autoscaling (min/max replicas, target ongoing
requests) and resources: on CPU one CPU bundle per replica, on GPU `tensor_parallel_size` GPUs. The ingress is
`ray.serve.llm`'s OpenAI router with four routes only: `POST /v1/chat/completions`, `POST /v1/completions`,
`GET /v1/models`, `GET /v1/models/{model}`. Before a request reaches a model the ingress
- checks the bearer token when `auth_token_env` names one (401 without it). The token is read from that
  environment variable where the app is built and only its SHA-256 goes to the replica, so it never appears
  in Serve's config or logs (use a random token, e.g. `openssl rand -hex 32`);
- parses the body itself, so a malformed request gets a 400 that names the field (vLLM's server answered
  `"messages": 3` with a 500), an unknown model a 404 that lists the ones served, and a body over
  `serve.max_request_bytes` a 413 (refused on its Content-Length, or as soon as what arrives is over).

The evaluation (atheus_ray.evaluate.run) starts the same app in-process with `start()` and stops it after.
Uses two `ray.llm._internal` helpers that `build_openai_app` itself uses (the ingress's FastAPI app with its
error middleware, and model cards); they are pinned with ray in pyproject.toml.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
import urllib.request
from typing import Literal

import ray
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import serve
from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
from ray.llm._internal.serve.core.ingress.ingress import init as ingress_fastapi_app
from ray.serve.llm import LLMConfig, build_llm_deployment
from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress
from ray.serve.llm.openai_api_models import ChatCompletionRequest, CompletionRequest

from atheus_ray import models as model_sources
from atheus_ray.config import ConfigError, ServeAppConfig, ServeConfig, ServedModelConfig, load_config
from atheus_ray.engine import runtime_env
from atheus_ray.serve import reaper, replica_start

APP_NAME = "atheus"
ROUTES = {
    "chat": lambda app: app.post("/v1/chat/completions"),
    "completions": lambda app: app.post("/v1/completions"),
    "models": lambda app: app.get("/v1/models"),
    "model_data": lambda app: app.get("/v1/models/{model:path}"),
}


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict] | None = None


class _ChatShape(BaseModel):
    """The shape vLLM's request model takes on trust (it answered `"messages": 3` with a 500)."""

    model_config = ConfigDict(extra="allow")
    model: str | None = None
    messages: list[_Message] = Field(min_length=1)


class _CompletionShape(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    prompt: str | list[str] | list[int] | list[list[int]]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    kind = {401: "authentication_error", 404: "not_found_error"}.get(status, "invalid_request_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}}, status)


class GatedIngress(OpenAiIngress):
    """The OpenAI router with bearer auth and request validation in front (see the module docstring)."""

    def __init__(
        self,
        llm_deployments,
        model_cards,
        *,
        max_request_bytes: int,
        token_sha256: str | None = None,
        **kwargs,
    ):
        super().__init__(llm_deployments, model_cards, **kwargs)
        self._token_sha256 = token_sha256
        self._max_request_bytes = max_request_bytes

    def _denied(self, request: Request) -> JSONResponse | None:
        if not self._token_sha256:
            return None
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(_sha256(sent.strip()), self._token_sha256):
            return _error(401, "missing or wrong bearer token (header 'Authorization: Bearer TOKEN')")
        return None

    async def _body(self, request: Request) -> bytes | None:
        """The request's body, or None when it is over max_request_bytes: refused on its Content-Length before it
        is read, or as soon as what arrives is over."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_request_bytes:
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self._max_request_bytes:
                return None
        return bytes(body)

    async def _parse(self, request: Request, shape, schema):
        """(body, None) for a valid request, or (None, a 4xx response naming what is wrong)."""
        body = await self._body(request)
        if body is None:
            return None, _error(413, f"body is over the {self._max_request_bytes} bytes one request may have")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            return None, _error(400, f"body is not JSON: {e}")
        if not isinstance(data, dict):
            return None, _error(400, f"body must be a JSON object, got {type(data).__name__}")
        model = data.get("model")
        if isinstance(model, str) and model not in self._model_cards:
            served = ", ".join(sorted(self._model_cards))
            return None, _error(404, f"model {model!r} is not served here; served: {served}", "model")
        try:
            shape.model_validate(data)
            return schema.model_validate(data), None
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            return None, _error(400, f"{where}: {first['msg']} ({len(e.errors())} problem(s))", where)

    async def _handle(self, request: Request, shape, schema, call_method: str):
        problem = self._denied(request)
        if problem is None:
            body, problem = await self._parse(request, shape, schema)
        return problem or await self._process_llm_request(body, call_method=call_method, raw_request=request)

    async def chat(self, request: Request):
        return await self._handle(request, _ChatShape, ChatCompletionRequest, "chat")

    async def completions(self, request: Request):
        return await self._handle(request, _CompletionShape, CompletionRequest, "completions")

    async def models(self, request: Request):
        return self._denied(request) or await super().models()

    async def model_data(self, model: str, request: Request):
        return self._denied(request) or await super().model_data(model)


def deployment_name(model_name: str) -> str:
    """The Serve deployment that hosts a served model (in app APP_NAME), which callers in the cluster (the
    evaluation's answers) reach by handle: `LLMServer:` and the name, `/` written `--` and `.` written `_`."""
    return "LLMServer:" + _deployment_suffix(model_name)


def _deployment_suffix(model_name: str) -> str:
    return model_name.replace("/", "--").replace(".", "_")


def llm_config(model: ServedModelConfig, cfg: ServeConfig) -> LLMConfig:
    """The `ray.serve.llm` config of one served model."""
    engine_kwargs = {
        "dtype": cfg.dtype,
        "max_model_len": cfg.max_model_len,
        "enforce_eager": cfg.enforce_eager,
        "gpu_memory_utilization": cfg.gpu_memory_utilization,
        "tensor_parallel_size": model.tensor_parallel_size if cfg.accelerator == "gpu" else 1,
    }
    deployment = {
        "name": _deployment_suffix(model.name),  # ray.serve.llm adds the `LLMServer:` prefix
        "autoscaling_config": {
            "min_replicas": cfg.min_replicas,
            "max_replicas": cfg.max_replicas,
            "target_ongoing_requests": cfg.target_ongoing_requests,
        },
        "max_ongoing_requests": cfg.max_ongoing_requests,
    }
    if cfg.accelerator == "cpu":  # the engine's one CPU bundle; the replica actor itself shares it
        placement = {"bundles": [{"CPU": 1, **cfg.resources}]}
        deployment["ray_actor_options"] = {"num_cpus": 0}
    else:  # one GPU bundle per tensor-parallel worker, on one node (ray.serve.llm's default, PACK, may split)
        placement = {
            "bundles": [{"GPU": 1, **cfg.resources} for _ in range(engine_kwargs["tensor_parallel_size"])],
            "strategy": "STRICT_PACK",
        }
    return LLMConfig(
        model_loading_config={"model_id": model.name, "model_source": str(model_sources.resolve(model.source))},
        engine_kwargs=engine_kwargs,
        deployment_config=deployment,
        placement_group_config=placement,
        runtime_env=runtime_env(cfg.accelerator),
        callback_config=replica_start.CALLBACK,
    )


def build_app(served: list[ServedModelConfig], cfg: ServeConfig):
    """The Serve application: one deployment per model, and the gated OpenAI ingress in front."""
    names = [m.name for m in served]
    if len(set(names)) != len(names):
        raise ConfigError(f"models: model names must be unique, got {names}")
    if cfg.min_replicas > cfg.max_replicas:
        raise ConfigError(f"serve: min_replicas ({cfg.min_replicas}) > max_replicas ({cfg.max_replicas})")
    token = os.environ.get(cfg.auth_token_env) if cfg.auth_token_env else None
    if cfg.auth_token_env and not token:
        raise ConfigError(f"serve.auth_token_env: environment variable {cfg.auth_token_env} is not set")
    configs = {m.name: llm_config(m, cfg) for m in served}
    ingress = make_fastapi_ingress(GatedIngress, endpoint_map=ROUTES, app=ingress_fastapi_app())
    options = {
        "num_replicas": 1,
        "ray_actor_options": {"num_cpus": cfg.ingress_cpus, "resources": cfg.ingress_resources},
        "max_ongoing_requests": max(1000, cfg.max_ongoing_requests * len(served)),
    }
    return serve.deployment(ingress, name="OpenAiIngress", **options).bind(
        llm_deployments={name: build_llm_deployment(c) for name, c in configs.items()},
        model_cards={name: to_model_metadata(name, c) for name, c in configs.items()},
        token_sha256=_sha256(token) if token else None,  # the replica compares hashes; the token stays here
        max_request_bytes=cfg.max_request_bytes,
    )


def app_builder(args: dict):
    """Serve's application builder (`serve run` / a RayService `import_path`): args {config: PATH}."""
    cfg = load_config(ServeAppConfig, args["config"])
    return build_app(cfg.models, cfg.serve)


def start(served: list[ServedModelConfig], cfg: ServeConfig, log=print) -> str:
    """Deploy the app on the connected Ray cluster (blocks until every model is up); return its base URL …/v1,
    at an address every node can reach: Ray Data's HTTP actors that call it run on any worker node, and Serve
    would run HTTP proxies on the head and on nodes with replicas only, so `127.0.0.1` is refused on the
    others. The app gets one proxy, on the head; with `host` 0.0.0.0 the URL names the head node's IP; a
    loopback `host` on a cluster whose nodes have other IPs is a ConfigError (nothing else could reach it)."""
    began = time.time()
    url = f"http://{reachable_host(cfg.host)}:{cfg.port}/v1"  # checked before anything is deployed
    # one proxy, on the head: the URL names it, and nodes sharing a machine (a local cluster) do not fight for
    # the port. (The RayService's serveConfigV2 sets its own proxy_location.)
    serve.start(proxy_location="HeadOnly", http_options={"host": cfg.host, "port": cfg.port})
    names = ", ".join(f"{m.name} ({m.source})" for m in served)
    deploy(build_app(served, cfg), APP_NAME, "/", f"Serve app {APP_NAME!r} of {names}")
    headers = {"Authorization": f"Bearer {os.environ[cfg.auth_token_env]}"} if cfg.auth_token_env else {}
    with urllib.request.urlopen(urllib.request.Request(url + "/models", headers=headers), timeout=30) as r:
        listed = [m["id"] for m in json.load(r)["data"]]
    log(f"[serve] {len(listed)} model(s) up at {url} in {time.time() - began:.0f} s: {', '.join(listed)}")
    return url


class EngineStartError(RuntimeError):
    """A Serve app whose models did not come up: a replica failed to start, and Serve gave up on it."""


def deploy(app, name: str, route_prefix: str | None, what: str) -> None:
    """`serve.run(app)`, which waits until the app is RUNNING. A replica that cannot start is tried 3 times by
    Serve, which then marks the app DEPLOY_FAILED and serve.run raises: the app is removed and EngineStartError
    names `what` and the deployments' own last error lines (a vLLM engine's error). The app goes with this
    driver however it ends (atheus_ray.serve.reaper)."""
    reaper.watch(name)  # before serve.run: a driver killed while the replicas start leaves no app either
    try:
        serve.run(app, name=name, route_prefix=route_prefix)
    except RuntimeError as failed:
        app_status = serve.status().applications.get(name)
        reasons = [
            f"{deployment}: {last_error(status.message)}"
            for deployment, status in (app_status.deployments if app_status else {}).items()
            if status.message and status.status != "HEALTHY"
        ]
        stop(name)  # and Serve with it when no other app is left: the next start gets its own proxy settings
        raise EngineStartError(f"{what} failed to start: " + "; ".join(reasons or [str(failed)])) from None


def last_error(message: str) -> str:
    """The last exception line of a message that ends in a traceback, with the detail lines after it (a pydantic
    error's field and reason), without the links; the last line when there is no exception line."""
    lines = [line.strip() for line in message.splitlines() if line.strip() and "errors.pydantic.dev" not in line]
    starts = [i for i, line in enumerate(lines) if re.match(r"[\w.]+(Error|Exception)\b.*:", line)]
    found = lines[starts[-1] : starts[-1] + 3] if starts else lines[-1:] or [message]
    return " / ".join(line if len(line) <= 300 else line[:300] + " ..." for line in found)


def reachable_host(host: str) -> str:
    """The host for clients on any node of the connected cluster (see `start`)."""
    nodes = [n for n in ray.nodes() if n["Alive"]]
    head = next((n["NodeManagerAddress"] for n in nodes if "node:__internal_head__" in n["Resources"]), "127.0.0.1")
    if host in ("0.0.0.0", "::"):
        return head
    others = sorted({n["NodeManagerAddress"] for n in nodes} - {head})
    if host in ("127.0.0.1", "localhost", "::1") and others:
        raise ConfigError(
            f"serve.host: {host} is reachable from the head only, and this cluster has nodes at "
            f"{', '.join(others)} whose Ray Data workers must call it; set serve.host: 0.0.0.0"
        )
    return host


def stop(name: str = APP_NAME) -> None:
    """Remove the app `name` and its replicas; shut Serve down too when no other app is left (so the next
    `start` gets its own host and port). The Ray cluster stays."""
    reaper.delete(name)
    reaper.release(name)
