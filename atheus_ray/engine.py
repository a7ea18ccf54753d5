"""The one place that builds LLM processors for Ray Data, and the phase's LLM that they run on.

`Engine(model, engine)` is a phase's LLM: every LLM pass of the phase calls `Engine.generate(requests)`.

`engine.kind: serve` (the default) starts the model once, at the first pass that has work, as a Ray Serve
deployment of `ray.serve.llm` (vLLM replicas with the same engine settings, placement and resources as below,
`concurrency` of them, or autoscaling from `min_replicas`), and keeps it until `Engine.close()`: synthesis and
screening of a phase share one engine start, however many passes they make. Each pass sends its requests to
the deployment by handle from this process (no HTTP, no port; `batch_size x concurrency` in flight), as
`ray.data.llm`'s Serve-deployment stage does but without starting a stage actor per pass (`_by_handle`), with
the same requests as below: per-request sampling, structured outputs (vLLM's own: JSON schema, choice, regex),
token counts from the response's usage.

`engine.kind: vllm` wraps `ray.data.llm`'s vLLM processor: one or more vLLM engine replicas as Ray actors,
fed batches of rows that carry chat `messages` and per-row `sampling_params`. On CPU each replica gets a
one-CPU placement bundle (without it, vLLM stages wait forever for a GPU); on GPU, Ray Data places
`tensor_parallel_size x pipeline_parallel_size` GPUs per replica. Structured outputs use the xgrammar
backend with `disable_any_whitespace`: JSON comes out compact, instead of the runs of spaces and newlines
a small model otherwise spends its token budget on (and gets cut off in). Ray Data kills the engine actors
after each pass; they get the Serve replicas' guard (atheus_ray.serve.replica_start), so none of their vLLM
processes or files outlive them.

Either way, a prompt of `max_model_len` tokens or more is found by tokenizing first and answered
`prompt_too_long` without reaching the engine (one such row would stop a whole Ray Data stage).

`engine.kind: openai` sends the same requests to an OpenAI-compatible `/chat/completions` endpoint through
`ray.data.llm`'s HTTP processor (`concurrency` workers, `qps` cap, retries with exponential backoff on
408/429/502/503/504 and timeouts). Constrained decoding becomes `response_format` JSON schemas (a choice is
a schema with an enum), which both OpenAI and vLLM's server accept. The API key is read from the environment
variable named by `api_key_env` and only ever put in the request header.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import time
from typing import Callable
from urllib.parse import urlparse

import ray
from ray.data.llm import HttpRequestProcessorConfig, Processor, build_processor, vLLMEngineProcessorConfig

from atheus_ray import models
from atheus_ray.config import EngineConfig, ModelConfig, SamplingConfig
from atheus_ray.console import progress


def sampling_params(cfg: SamplingConfig, structured: dict | None = None) -> dict:
    """vLLM sampling parameters for one request; `structured` constrains decoding, e.g.
    {"json": schema_as_json_text} or {"choice": ["同じ", "異なる"]} (vLLM structured outputs).

    An unconstrained request has no `structured_outputs` key rather than a None one: in a `vllm` pass Ray Data
    joins blocks of rows, and a block whose rows all had None (an Arrow null column) next to one with a
    constraint (a struct) crashed the pass in Ray's schema alignment (ray-project/ray#61656); a missing field it
    fills in."""
    params = {
        "max_tokens": cfg.max_tokens,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "repetition_penalty": cfg.repetition_penalty,
    }
    return params | ({"structured_outputs": structured} if structured is not None else {})


def build_llm_processor(
    model: ModelConfig,
    engine: EngineConfig,
    preprocess: Callable[[dict], dict],
    postprocess: Callable[[dict], dict],
) -> Processor:
    """A `ray.data.llm` processor: `preprocess` must return `messages` and `sampling_params`;
    `postprocess` receives them back with `generated_text` and `num_generated_tokens`."""
    light = {"num_cpus": LIGHT_CPUS}
    config = vLLMEngineProcessorConfig(
        model_source=models.resolve(model.source),
        engine_kwargs=engine_kwargs(model, engine),
        batch_size=engine.batch_size,
        concurrency=engine.concurrency,
        placement_group_config=placement(engine),
        runtime_env=_guarded(runtime_env(engine.accelerator)),
        should_continue_on_error=True,  # a request the engine cannot run is that row's error, not the pass's
        chat_template_stage=light,
        tokenize_stage=light,
        detokenize_stage=light,
    )
    return build_processor(
        config,
        preprocess=preprocess,
        postprocess=postprocess,
        preprocess_map_kwargs=light,
        postprocess_map_kwargs=light,
    )


# Ray Data gives every task and actor of a stage 1 CPU unless told otherwise. The stages around the engine (chat
# template, tokenizer, detokenizer, HTTP workers, pre/postprocess) are light, and at 1 CPU each they can hold every
# CPU of a small cluster: a `vllm` pass on a 4-CPU local cluster hung for good, its three tokenizer actors and
# the engine holding all 4 CPUs and the preprocess tasks waiting for one. They ask for a quarter of a CPU.
LIGHT_CPUS = 0.25


def engine_kwargs(model: ModelConfig, engine: EngineConfig) -> dict:
    """vLLM engine arguments, the same for an in-process engine (`vllm`) and a Serve replica (`serve`)."""
    return {
        "dtype": model.dtype,
        "max_model_len": model.max_model_len,
        "gpu_memory_utilization": engine.gpu_memory_utilization,
        "tensor_parallel_size": engine.tensor_parallel_size,
        "pipeline_parallel_size": engine.pipeline_parallel_size,
        "enforce_eager": engine.enforce_eager,
        "seed": engine.seed,
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }


# On CPU, vLLM binds its compute threads to every core but one, which it keeps for its scheduler: half of a
# 2-core machine. Measured there (SmolLM2-135M, 14 requests): with no core kept, decoding 1.32x and prefill 1.48x
# faster. vLLM still picks the cores itself, on the replica's own node.
CPU_RUNTIME_ENV = {"env_vars": {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}}


def runtime_env(accelerator: str) -> dict | None:
    """The runtime env of a vLLM replica: CPU_RUNTIME_ENV on CPU, none on GPU."""
    return CPU_RUNTIME_ENV if accelerator == "cpu" else None


def _guarded(env: dict | None) -> dict:
    """`env` with the switch of the replica guard's vLLM plugin on (atheus_ray.serve.replica_start): a `vllm`
    stage's engine actors are killed after every pass, and would leave their vLLM files behind."""
    from atheus_ray.serve.replica_start import GUARD_ENV

    env = env or {}
    return {**env, "env_vars": {**env.get("env_vars", {}), GUARD_ENV: "1"}}


def placement(engine: EngineConfig) -> dict:
    """The placement group of one vLLM replica. CPU: one CPU bundle (without it a vLLM stage waits forever for a
    GPU). GPU: one bundle per tensor x pipeline worker, each a GPU and a CPU, STRICT_PACKed onto one node (Ray
    Data's default, PACK, may split a replica across nodes). `engine.resources` is added to every bundle."""
    if engine.accelerator == "cpu":
        return {"bundles": [{"CPU": 1, **engine.resources}]}
    bundle = {"GPU": 1, "CPU": 1, **engine.resources}
    return {
        "bundles": [dict(bundle) for _ in range(engine.tensor_parallel_size * engine.pipeline_parallel_size)],
        "strategy": "STRICT_PACK",
    }


SERVE_APP, SERVED_AS = "atheus-engine", "generator"  # the Serve application of a phase's `serve` engine, model id


class Engine:
    """A phase's LLM (see the module docstring). Use as a context manager, or call `close()`: with `serve`, the
    deployment lives from the first pass with work until then. `stats()` counts engine starts, the seconds they
    took (`serve`; an in-process `vllm` engine starts inside its pass, untimed) and passes."""

    def __init__(self, model: ModelConfig, engine: EngineConfig, log: Callable[[str], None] = print):
        self.model, self.engine, self.log = model, engine, log
        self.starts, self.start_seconds, self.passes, self.deployment = 0, 0.0, 0, None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def generate(self, requests: list[dict]) -> list[dict]:
        """Run chat requests in one pass and return, in request order, {key, text, tokens_in, tokens_out, error}
        for each. A request is {key, messages, sampling_params}; requests of different kinds (plain answers,
        JSON, choices) can share one pass.

        `error` is None, or `"<reason>: <message>"` for a request that got no answer: `prompt_too_long` (its
        prompt has `max_model_len` tokens or more, found by tokenizing here; openai: the endpoint's 400 saying
        so), `http_<status>` (openai: an error body that retrying cannot fix) or `engine_error` (serve: the
        replica's error for that request). Callers reject those rows with the reason."""
        if not requests:
            return []
        kind = self.engine.kind
        too_long = _too_long(requests, self.model) if kind != "openai" else {}
        to_run = [r for r in requests if r["key"] not in too_long]
        done = dict(too_long)
        if to_run:
            self.passes += 1
            if kind == "serve":
                in_flight = self.engine.batch_size * self.engine.concurrency
                outputs = _by_handle(to_run, SERVE_APP, self._deployment(), SERVED_AS, in_flight, self.log)
            else:
                if kind == "vllm":
                    self.starts += 1
                    processor = build_llm_processor(self.model, self.engine, _vllm_preprocess, _vllm_postprocess)
                else:
                    processor = _openai_processor(self.model, self.engine)
                outputs = [_failed_row(o) for o in processor(ray.data.from_items(to_run)).take_all()]
            done.update({o["key"]: o for o in outputs})
        return [done[r["key"]] for r in requests]

    def start(self) -> None:
        """Start the Serve deployment now rather than at the first pass (`serve`; the other kinds start nothing)."""
        if self.engine.kind == "serve":
            self._deployment()

    def _deployment(self) -> str:
        """The Serve deployment's name, started now if it is not up yet."""
        if self.deployment is None:
            began = time.time()
            self.starts += 1
            try:
                self.deployment = _start_deployment(self.model, self.engine)
            except BaseException:  # a replica that failed to start (or Ctrl-C meanwhile): leave no app behind
                from atheus_ray.serve import app as serve_app

                with contextlib.suppress(Exception):  # there may be no app, or no Serve, to remove
                    serve_app.stop(SERVE_APP)
                raise
            self.start_seconds += time.time() - began
            self.log(
                f"[engine] {models.display_name(self.model.source)} up as a Serve deployment "
                f"({self.engine.concurrency} replica(s) at most) in {time.time() - began:.0f} s"
            )
        return self.deployment

    def close(self) -> None:
        """Remove the Serve deployment, if one was started (and Serve itself when no other app is left). A Serve
        app outlives the driver that made it: the CLI turns SIGTERM (`ray job stop`) into an exit that comes
        through here, and the app's reaper removes it after a driver killed outright (atheus_ray.serve.reaper)."""
        if self.deployment is not None:
            from atheus_ray.serve import app as serve_app

            self.deployment = None
            serve_app.stop(SERVE_APP)

    def stats(self) -> dict:
        return {
            "kind": self.engine.kind,
            "starts": self.starts,
            "start_seconds": round(self.start_seconds, 1),
            "passes": self.passes,
        }


def generate(requests: list[dict], model: ModelConfig, engine: EngineConfig) -> list[dict]:
    """One pass on an engine of its own (started and removed here): `Engine.generate`."""
    with Engine(model, engine) as llm:
        return llm.generate(requests)


def generate_by_handle(
    requests: list[dict], app: str, deployment: str, model_id: str, in_flight: int, log: Callable | None = None
) -> list[dict]:
    """One pass on a `ray.serve.llm` deployment that is already up (the evaluation's candidates), by handle,
    up to `in_flight` requests at once; outputs as `Engine.generate` (a prompt too long for the model comes
    back as the replica's error, `prompt_too_long`)."""
    if not requests:
        return []
    return _by_handle(requests, app, deployment, model_id, in_flight, log)


def _vllm_preprocess(row: dict) -> dict:
    return {"key": row["key"], "messages": row["messages"], "sampling_params": row["sampling_params"]}


def _vllm_postprocess(row: dict) -> dict:
    return {
        "key": row["key"],
        "text": row["generated_text"],
        "tokens_in": int(row["num_input_tokens"]),
        "tokens_out": int(row["num_generated_tokens"]),
        "error": None,
    }


def _failed_row(row: dict) -> dict:
    """A `vllm` row the engine failed on skips the postprocess and keeps its input columns with Ray's
    `__inference_error__`: make it that request's `engine_error`, as the `serve` kind does."""
    error = row.get("__inference_error__")
    return no_answer(row["key"], f"engine_error: {error}") if error else row


def deployment_config(model: ModelConfig, engine: EngineConfig):
    """The `ray.serve.llm` config of a phase's engine (`engine.kind: serve`): `engine.concurrency` replicas (down to
    `engine.min_replicas` when idle), `engine.batch_size` requests each as the autoscaling target."""
    from ray.serve.llm import LLMConfig

    from atheus_ray.serve import replica_start

    replicas = engine.concurrency
    deployment = {
        "autoscaling_config": {
            "min_replicas": replicas if engine.min_replicas is None else engine.min_replicas,
            "max_replicas": replicas,
            "initial_replicas": replicas,
            "target_ongoing_requests": engine.batch_size,
        },
        "max_ongoing_requests": 4 * engine.batch_size,
    }
    if engine.accelerator == "cpu":  # the engine's one CPU bundle; the replica actor itself shares it
        deployment["ray_actor_options"] = {"num_cpus": 0}
    return LLMConfig(
        model_loading_config={"model_id": SERVED_AS, "model_source": models.resolve(model.source)},
        engine_kwargs=engine_kwargs(model, engine),
        deployment_config=deployment,
        placement_group_config=placement(engine),
        runtime_env=runtime_env(engine.accelerator),
        callback_config=replica_start.CALLBACK,
    )


def _start_deployment(model: ModelConfig, engine: EngineConfig) -> str:
    """Deploy the model as the `SERVE_APP` application (blocks until its replicas are up); return the name of
    its deployment. No HTTP proxy is started for it: passes reach it by deployment handle."""
    from ray import serve
    from ray.serve.llm import build_llm_deployment

    from atheus_ray.serve import app as serve_app

    serve.start(proxy_location="Disabled")
    shown, path = models.display_name(model.source), models.resolve(model.source)
    what = f"the engine of {shown}" + (f" ({path})" if path != shown else "")
    serve_app.deploy(
        build_llm_deployment(deployment_config(model, engine), name_prefix="Engine:"), SERVE_APP, None, what
    )
    return f"Engine:{SERVED_AS}"


def _by_handle(
    requests: list[dict],
    app: str,
    deployment: str,
    model_id: str,
    in_flight: int,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """Send each request to a `ray.serve.llm` deployment's `chat` method by handle, from this process,
    `in_flight` at once; outputs in request order (see Engine.generate).

    This is what `ray.data.llm`'s Serve-deployment stage does per row, without the stage: a Ray Data pass starts
    a new stage actor, which imports vLLM to build the requests and read the replies (7 s of every pass on
    2 cores, for any pass size), while this process has imported it once. The requests are in memory here
    already, and the replicas do the work wherever they are on the cluster. A request the replica rejects
    (ValueError, TypeError or a validation error, as the stage counts them) is `engine_error`; anything else
    (a dead deployment) raises. Progress: a live bar on the run's console (atheus_ray.console), else a line
    through `log`, if given, every 30 s."""
    import asyncio

    from pydantic import BaseModel, ValidationError
    from ray import serve
    from ray.exceptions import RayTaskError
    from ray.serve.llm.openai_api_models import ChatCompletionRequest

    recoverable = (ValueError, TypeError, ValidationError)
    handle = serve.get_deployment_handle(deployment, app).options(stream=True)
    outputs: list[dict | None] = [None] * len(requests)
    bar = progress(len(requests), f"[engine] {model_id}", log)

    async def one(i: int, request: dict, gate: asyncio.Semaphore) -> None:
        params = {k: v for k, v in request["sampling_params"].items() if v is not None}
        async with gate:
            try:
                chat = ChatCompletionRequest(model=model_id, messages=request["messages"], stream=False, **params)
                reply = await handle.chat.remote(chat).__anext__()
            except Exception as e:
                cause = e.cause if isinstance(e, RayTaskError) and hasattr(e, "cause") else e
                if not isinstance(cause, recoverable):
                    raise
                outputs[i] = no_answer(request["key"], f"engine_error: {type(cause).__name__}: {str(cause)[:500]}")
                bar.update(1)
                return
        reply = reply.model_dump() if isinstance(reply, BaseModel) else reply
        error = openai_error(reply)
        usage = (reply.get("usage") or {}) if isinstance(reply, dict) else {}
        outputs[i] = {
            "key": request["key"],
            "text": "" if error else openai_text(reply, False),
            "tokens_in": int(usage.get("prompt_tokens") or 0),
            "tokens_out": int(usage.get("completion_tokens") or 0),
            "error": error,
        }
        bar.update(1, outputs[i]["tokens_out"])

    async def run() -> None:
        gate = asyncio.Semaphore(in_flight)
        await asyncio.gather(*(one(i, r, gate) for i, r in enumerate(requests)))

    with bar:
        asyncio.run(run())
    return outputs


def no_answer(key: str, error: str) -> dict:
    """The output of a request that got no answer, `error` saying why (see Engine.generate)."""
    return {"key": key, "text": "", "tokens_in": 0, "tokens_out": 0, "error": error}


def error_reason(output: dict) -> tuple[str, str] | None:
    """(reject_reason, detail) of an output that got no answer (see generate), else None."""
    if not output.get("error"):
        return None
    reason, _, detail = output["error"].partition(": ")
    return reason, detail


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str):
    """The model's tokenizer, loaded once per process: every LLM pass of a phase checks its prompts with it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _too_long(requests: list[dict], model: ModelConfig) -> dict[str, dict]:
    """Outputs for the requests whose chat prompt has max_model_len tokens or more (no room to answer)."""
    tokenizer = _tokenizer(models.resolve(model.source))
    found = {}
    for request in requests:
        ids = tokenizer.apply_chat_template(request["messages"], add_generation_prompt=True, tokenize=True)
        n = len(ids if isinstance(ids, list) else ids["input_ids"])
        if n >= model.max_model_len:
            found[request["key"]] = no_answer(
                request["key"], f"prompt_too_long: {n} prompt tokens, model.max_model_len {model.max_model_len}"
            )
    return found


CHOICE_KEY = "answer"


def openai_payload(request: dict, model_name: str, repetition_penalty: bool = True) -> dict:
    """An OpenAI chat-completions body for a request; structured outputs become `response_format`.
    `repetition_penalty` (a vLLM parameter, which vLLM's server and Serve accept) is sent when not 1.0, unless
    the endpoint does not take it (the OpenAI API answers it with a 400)."""
    params = dict(request["sampling_params"])
    structured = params.pop("structured_outputs", None) or {}
    if not repetition_penalty or params.get("repetition_penalty", 1.0) == 1.0:
        params.pop("repetition_penalty", None)
    body = {"model": model_name, "messages": request["messages"], **params}
    if structured.get("json"):
        schema = json.loads(structured["json"])
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    elif structured.get("choice"):
        schema = {
            "type": "object",
            "properties": {CHOICE_KEY: {"type": "string", "enum": list(structured["choice"])}},
            "required": [CHOICE_KEY],
            "additionalProperties": False,
        }
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "choice", "schema": schema}}
    return body


def openai_error(response: dict) -> str | None:
    """`"<reason>: <message>"` for an error body (OpenAI's `{"error": {...}}`, vLLM's `{"object": "error"}`), else
    None. Ray's HTTP processor retries 408/429/502/503/504 itself and hands over the body of anything else."""
    if not isinstance(response, dict):
        return f"http_error: response is {type(response).__name__}, not a JSON object"
    # rows pass through Arrow, which gives every response the union of all responses' keys (absent ones None)
    error = response.get("error") or (response if response.get("object") == "error" else None)
    if not error:
        return None
    if not isinstance(error, dict):
        error = {"message": str(error)}
    message = str(error.get("message") or error)
    code = error.get("code") or response.get("code") or "error"
    if re.search(r"context length|too long|maximum.*tokens|max_model_len", message, re.IGNORECASE):
        return f"prompt_too_long: http {code}: {message[:500]}"
    return f"http_{code}: {message[:500]}"


def openai_text(response: dict, choice: bool) -> str:
    """The message text of a chat-completions response (a choice unwrapped from its JSON); '' if none."""
    try:
        text = response["choices"][0]["message"]["content"] or ""
    except (KeyError, IndexError, TypeError):
        return ""
    if choice:
        try:
            return str(json.loads(text)[CHOICE_KEY])
        except (ValueError, KeyError, TypeError):
            return text
    return text


def _openai_processor(model: ModelConfig, engine: EngineConfig) -> Processor:
    key = os.environ.get(engine.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    config = HttpRequestProcessorConfig(
        url=engine.base_url.rstrip("/") + "/chat/completions",
        headers=headers,
        qps=engine.qps,
        max_retries=engine.max_retries,
        batch_size=engine.batch_size,
        concurrency=engine.concurrency,
        http_request_stage={"num_cpus": LIGHT_CPUS},
    )

    takes_penalty = urlparse(engine.base_url).hostname != "api.openai.com"

    def preprocess(row: dict) -> dict:
        is_choice = bool((row["sampling_params"].get("structured_outputs") or {}).get("choice"))
        return {
            "key": row["key"],
            "is_choice": is_choice,
            "payload": openai_payload(row, model.source, repetition_penalty=takes_penalty),
        }

    def postprocess(row: dict) -> dict:
        response = row["http_response"]
        error = openai_error(response)
        usage = (response.get("usage") if isinstance(response, dict) else None) or {}
        return {
            "key": row["key"],
            "text": "" if error else openai_text(response, row["is_choice"]),
            "tokens_in": int(usage.get("prompt_tokens") or 0),
            "tokens_out": int(usage.get("completion_tokens") or 0),
            "error": error,
        }

    light = {"num_cpus": LIGHT_CPUS}
    return build_processor(
        config,
        preprocess=preprocess,
        postprocess=postprocess,
        preprocess_map_kwargs=light,
        postprocess_map_kwargs=light,
    )
