"""Generation throughput: this pipeline's LLM passes vs bare vLLM `LLM.chat` vs Hugging Face `generate`.

    .venv/bin/python benchmarks/generation.py [--model embedded] [--prompts 16] [--max-tokens 64]

Same model, same chat prompts (answer requests for the first seeds), greedy, and every request generates
exactly --max-tokens tokens (vLLM `ignore_eos`, HF `min_new_tokens`), so the token counts are equal. Each
method reports its start-up and generation time. The pipeline makes two passes of --prompts requests each
(the second with other prompts) on one atheus_ray.engine.Engine, once per engine kind: `vllm` (a
`ray.data.llm` vLLM processor per pass, each starting its engine, timed whole) and `serve` (one Ray Serve
deployment for both, started first, then each pass timed on its own), every request of a pass in flight at
once, as `LLM.chat` runs them. Ratios: a serve pass's tokens/s over bare vLLM's (goal >= 0.95), and the two
passes' wall time on serve over vllm.
Prints one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="model source (default: the embedded model)")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()

    from atheus_ray import models
    from atheus_ray.config import EngineConfig, ModelConfig, RespondConfig, SamplingConfig
    from atheus_ray.seeds import expand_paths, load_seeds, round_robin
    from atheus_ray.synth.respond import answer_request

    model_cfg, engine_cfg = ModelConfig(source=args.model), EngineConfig()
    path = models.resolve(args.model)
    seeds = round_robin(load_seeds(expand_paths(["seeds/*.jsonl"])), 2 * args.prompts)
    respond = RespondConfig(sampling=SamplingConfig(max_tokens=args.max_tokens, temperature=0.0))
    every = [answer_request(s.model_dump(), f"b/{i}", respond) for i, s in enumerate(seeds)]  # no examples
    for r in every:
        r["sampling_params"]["ignore_eos"] = True
    requests, second = every[: args.prompts], every[args.prompts :]  # the second pass: other prompts, same size
    conversations = [r["messages"] for r in requests]
    expected = len(requests) * args.max_tokens
    results = {}

    # 1. Hugging Face transformers generate (batched, left padding)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    start = time.perf_counter() - t0
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = hf.generate(
            **batch,
            max_new_tokens=args.max_tokens,
            min_new_tokens=args.max_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
    gen = time.perf_counter() - t0
    tokens = out.shape[0] * (out.shape[1] - batch.input_ids.shape[1])  # min_new_tokens: every row is full length
    results["hf_generate"] = _figures(start, gen, tokens)
    del hf

    # 2. bare vLLM, in this process, with the core setting the pipeline's replicas get (atheus_ray.engine)
    from vllm import LLM, SamplingParams

    from atheus_ray.engine import runtime_env

    os.environ.update((runtime_env(engine_cfg.accelerator) or {}).get("env_vars", {}))

    t0 = time.perf_counter()
    llm = LLM(
        model=path,
        dtype=model_cfg.dtype,
        max_model_len=model_cfg.max_model_len,
        gpu_memory_utilization=engine_cfg.gpu_memory_utilization,
        enforce_eager=engine_cfg.enforce_eager,
    )
    start = time.perf_counter() - t0
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0, ignore_eos=True)
    t0 = time.perf_counter()
    outs = llm.chat(conversations, params, use_tqdm=False)
    gen = time.perf_counter() - t0
    results["vllm_llm_chat"] = _figures(start, gen, sum(len(o.outputs[0].token_ids) for o in outs))
    del llm

    # 3. this pipeline's passes, two of them (as a phase makes several), on each engine kind: `vllm` starts a
    # ray.data.llm vLLM processor per pass; `serve` starts one deployment and sends both passes to it
    from atheus_ray.config import RayConfig
    from atheus_ray.engine import Engine
    from atheus_ray.ray_init import init_ray

    init_ray(RayConfig())
    passes = [requests, second]
    for kind in ("vllm", "serve"):
        engine = engine_cfg.model_copy(update={"kind": kind, "batch_size": len(requests)})  # all in flight at once
        t0 = time.perf_counter()
        with Engine(model_cfg, engine, log=lambda m: None) as llm:
            llm.start()  # serve: the deployment now, so each pass is timed without it; vllm: nothing
            began = time.perf_counter() - t0
            timed = []
            for batch in passes:
                t1 = time.perf_counter()
                outs = llm.generate(batch)
                timed.append((time.perf_counter() - t1, sum(o["tokens_out"] for o in outs)))
            stats = llm.stats()
        wall = time.perf_counter() - t0
        results[f"two_passes_{kind}"] = {
            "wall_s": round(wall, 2),
            "engine_starts": stats["starts"],
            "startup_s": round(began, 2) if kind == "serve" else None,
            "pass_s": [round(t, 2) for t, _ in timed],
            "output_tokens": [n for _, n in timed],
            "tokens_per_s": [round(n / t, 1) for t, n in timed],
        }

    vllm, serve = results["vllm_llm_chat"], results["two_passes_serve"]
    report = {
        "benchmark": "generation",
        "model": models.display_name(args.model),
        "prompts": len(requests),
        "max_tokens": args.max_tokens,
        "expected_output_tokens": expected,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
        "ratios": {
            "vllm_over_hf_generation": round(vllm["tokens_per_s"] / results["hf_generate"]["tokens_per_s"], 2),
            # the goal is >= 0.95: a pass on the shared deployment (its start excluded) against bare LLM.chat
            "serve_pass_over_bare_vllm_tokens_per_s": round(min(serve["tokens_per_s"]) / vllm["tokens_per_s"], 3),
            "two_passes_serve_over_vllm_kind_wall": round(serve["wall_s"] / results["two_passes_vllm"]["wall_s"], 3),
        },
    }
    print(json.dumps(report))  # one line, last on stdout (vLLM logs to stdout too)


def _figures(startup: float, generate: float, tokens: int) -> dict:
    return {
        "startup_s": round(startup, 2),
        "generate_s": round(generate, 2),
        "output_tokens": tokens,
        "tokens_per_s": round(tokens / generate, 1),
    }


if __name__ == "__main__":
    main()
