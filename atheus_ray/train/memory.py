"""The SFT memory plan: per-GPU memory of a run, estimated before any worker starts, and a refusal when it will
not fit.

    plan = estimate(ModelShape.from_config(AutoConfig.from_pretrained(path)), cfg)
    check(plan, gpu_gb=40.0)          # raises MemoryPlanError naming the knobs when it does not fit

What is counted, per GPU, for a Llama-style decoder (h hidden, I intermediate, L layers, V vocabulary, P
parameters, N FSDP workers, T = micro-batch x max_length tokens per micro-batch, packed):
- **state**: fp32 weights, fp32 gradients and AdamW's two fp32 moments, 16 bytes a parameter, sharded over the
  N workers by FSDP (accelerate upcasts bf16 weights to fp32 master weights under mixed precision); without FSDP
  (one worker) unsharded. Plus the bf16 copy of the two decoder layers FSDP has gathered at a time (one in use,
  one prefetched).
- **activations** kept for the backward pass, bf16: per token and layer about 34h + 8I bytes (RMSNorm inputs
  kept in fp32, q/k/v and their rotary copies, the attention output, the SwiGLU gate, up, activation and
  product; flash/SDPA attention keeps no s x s matrix). With activation checkpointing only each layer's input
  (2h bytes a token) is kept, and one layer's activations are rebuilt at a time.
- **logits**: T x V, bf16 from the LM head (2 bytes), upcast to fp32 for the loss (4), the fp32 log-softmax
  the loss keeps (4) and the fp32 gradient of the logits (4): 14 bytes a token and vocabulary entry. At
  16k tokens and llm-jp-3's 99,584-token vocabulary that alone is 22.8 GB.
- **overhead**: 3 GB of CUDA context, NCCL buffers and allocator reserve, then 10% for fragmentation.

These are estimates, not measurements: `benchmarks/sft_memory.py` measures peak memory on a GPU for the same
shapes, to check them. Columns: none (this module reads a model config and a TrainConfig, writes nothing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

GB = 1e9
OVERHEAD_GB = 3.0
FRAGMENTATION = 1.10


class MemoryPlanError(ValueError):
    """A training config whose estimated per-GPU memory exceeds the GPU's; the message names the knobs."""


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    intermediate: int
    layers: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        """From a transformers config of a Llama-style model (LlamaConfig and kin)."""
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        return cls(
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            layers=config.num_hidden_layers,
            vocab=config.vocab_size,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            tied=bool(getattr(config, "tie_word_embeddings", False)),
        )

    @property
    def layer_params(self) -> int:
        attention = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)  # q, o; k, v
        return attention + 3 * self.hidden * self.intermediate + 2 * self.hidden  # SwiGLU; two RMSNorms

    @property
    def params(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * self.layer_params + embeddings + self.hidden


@dataclass(frozen=True)
class Plan:
    """Estimated GB per GPU, by part, for one micro-batch size."""

    micro_batch: int
    tokens: int
    workers: int
    checkpointing: bool
    state_gb: float
    activations_gb: float
    logits_gb: float
    total_gb: float

    def describe(self) -> str:
        return (
            f"~{self.total_gb:.1f} GB per GPU (state {self.state_gb:.1f}, activations {self.activations_gb:.1f}, "
            f"logits {self.logits_gb:.1f}, + {OVERHEAD_GB:g} GB overhead and {FRAGMENTATION - 1:.0%}) at "
            f"micro-batch {self.micro_batch} x {self.tokens // self.micro_batch} tokens, {self.workers} "
            f"worker(s), activation checkpointing {'on' if self.checkpointing else 'off'}"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def estimate(shape: ModelShape, micro_batch: int, max_length: int, workers: int, checkpointing: bool) -> Plan:
    """The per-GPU memory plan (see the module docstring for what is counted)."""
    tokens = micro_batch * max_length
    shards = workers if workers > 1 else 1
    state = 16 * shape.params / shards + 2 * 2 * shape.layer_params * (workers > 1)
    per_layer = 34 * shape.hidden + 8 * shape.intermediate  # bytes a token, one layer, bf16
    if checkpointing:
        activations = tokens * (2 * shape.hidden * shape.layers + per_layer)
    else:
        activations = tokens * per_layer * shape.layers
    logits = tokens * shape.vocab * 14
    total = (state + activations + logits) / GB
    total = (total + OVERHEAD_GB) * FRAGMENTATION
    return Plan(
        micro_batch,
        tokens,
        workers,
        checkpointing,
        round(state / GB, 2),
        round(activations / GB, 2),
        round(logits / GB, 2),
        round(total, 2),
    )


def check(
    shape: ModelShape,
    micro_batch: int,
    max_length: int,
    workers: int,
    checkpointing: bool,
    gpu_gb: float,
    model: str = "the model",
) -> Plan:
    """The plan, or MemoryPlanError when it exceeds `gpu_gb`, naming what would fit."""
    plan = estimate(shape, micro_batch, max_length, workers, checkpointing)
    if plan.total_gb <= gpu_gb:
        return plan
    fits = [
        (b, c)
        for c in (checkpointing, True)
        for b in range(micro_batch, 0, -1)
        if estimate(shape, b, max_length, workers, c).total_gb <= gpu_gb
    ]
    if fits:
        b, c = fits[0]
        hint = (
            f"set train.batch_size={b}"
            + (" and train.activation_checkpointing=true" if c and not checkpointing else "")
            + f", and raise train.grad_accum by x{micro_batch / b:g} to keep the batch per step"
        )
    else:
        hint = "no micro-batch fits: lower train.max_length, or use more workers (train.num_workers) or larger GPUs"
    raise MemoryPlanError(
        f"train: {model} will not fit: {plan.describe()}, more than the GPU's {gpu_gb:.1f} GB; "
        f"{hint} (knobs: train.batch_size, train.grad_accum, train.activation_checkpointing, "
        f"train.max_length, train.num_workers)"
    )
