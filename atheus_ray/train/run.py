"""SFT on Ray Train: every condition x model, same examples count and budget, resumable, exported for vLLM.

    atheus train --config jobs/configs/sft.yaml [--set key=value ...]

For each model and condition: the condition's examples (atheus_ray.train.data) are subsampled to the shared
count, a dev split is held out, each example is rendered with the chat template and tokenized with loss on
assistant tokens only (tokens.py), then packed or padded (pack.py). A Ray Train `TorchTrainer` runs
`train_func` on `num_workers` workers: a Hugging Face `Trainer` (AdamW, cosine schedule to `min_lr` after a
linear warmup, clipping) reporting each checkpoint to Ray Train through `RayTrainReportCallback`. On CPU: fp32,
one gloo worker. On GPU: bf16, and FSDP (full shard) across workers.

**Resume.** Checkpoints (weights, optimizer, scheduler, RNG, step) go to `storage_path/<run>/` every
`save_steps` steps. Rerunning the same command finds the run's latest checkpoint (Ray Train restores its
checkpoint list from storage) and continues from that step, with the data order it had. A finished run's
checkpoints are deleted once its model is exported; metrics.json then marks it done.

Outputs under OUT/<condition>-<model>/: `model/` (weights, tokenizer and chat template: `vllm serve` or
`LLM(model=...)` load it directly), `metrics.json` (losses, dev loss, real tokens/s, MFU on GPU, wall time,
examples and drops) and `loss.png`; OUT/train.json lists every run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

from atheus_ray import models
from atheus_ray.config import ConfigError, TrainConfig
from atheus_ray.ray_init import init_ray
from atheus_ray.train.data import load_condition, subsample_and_split
from atheus_ray.train.tokens import encode, ensure_chat_template

EXPORT = "export"


def run_name(condition: str, model_source: str) -> str:
    """`<condition>-<model>` with only filename-safe characters."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{condition}-{models.display_name(model_source)}")


def train(cfg: TrainConfig, log=print) -> dict:
    """Train every condition x model; return the summary written to OUT/train.json."""
    from transformers import AutoTokenizer

    start = time.time()
    out = Path(cfg.out).resolve()
    storage = cfg.storage_path or str(out / "checkpoints")
    data = {c.name: load_condition(c) for c in cfg.conditions}
    for name, (examples, dropped) in data.items():
        log(f"condition {name}: {len(examples)} examples" + (f", dropped {dict(dropped)}" if dropped else ""))
    n = cfg.examples or min(len(examples) for examples, _ in data.values())
    if n < 2:
        raise ConfigError(f"examples: {n} training example(s) per condition; at least 2 are needed")
    where = init_ray(cfg.ray)
    log(f"ray: {where['address']} ({where['cpus']:g} CPUs, {where['gpus']:g} GPUs); {n} examples per condition")
    runs = []
    for source in cfg.models:
        path = models.resolve(source)
        tokenizer = AutoTokenizer.from_pretrained(path)
        fallback = ensure_chat_template(tokenizer)
        for condition in cfg.conditions:
            examples, dropped = data[condition.name]
            train_rows, dev_rows, too_long = subsample_and_split(
                examples, n, cfg.dev_fraction, cfg.seed, lambda r: encode(r["messages"], tokenizer, cfg.max_length))
            encoded = {"train": train_rows, "dev": dev_rows}
            name = run_name(condition.name, source)
            fingerprint = _fingerprint(cfg, path, encoded)
            log(f"[{name}] {len(encoded['train'])} train / {len(encoded['dev'])} dev examples"
                + (f"; skipped {too_long} longer than {cfg.max_length} tokens" if too_long else ""))  # fmt: skip
            runs.append(_fit(name, fingerprint, path, tokenizer, fallback, encoded, cfg, storage, out / name, log)
                        | {"condition": condition.name, "model": source, "license": condition.license,
                           "dropped": dict(dropped), "too_long": too_long})  # fmt: skip
    summary = {"runs": runs, "wall_seconds": round(time.time() - start, 1), "storage_path": storage,
               "summary": str(out / "train.json")}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return summary


def _fingerprint(cfg: TrainConfig, path: str, encoded: dict) -> str:
    """What a run's result depends on: the training settings, the model, the tokenized examples."""
    h = hashlib.sha256(json.dumps(cfg.model_dump(exclude={"out", "storage_path", "ray", "models", "conditions"}),
                                  sort_keys=True).encode())  # fmt: skip
    h.update(path.encode())
    h.update(json.dumps(encoded).encode())
    return h.hexdigest()[:12]


def _fit(name, fingerprint, path, tokenizer, fallback, encoded, cfg: TrainConfig, storage, run_dir: Path,
         log) -> dict:  # fmt: skip
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    done = run_dir / "metrics.json"
    if done.exists() and json.loads(done.read_text()).get("fingerprint") == fingerprint:
        log(f"[{name}] trained in an earlier run: reusing {run_dir / 'model'}")
        return {**json.loads(done.read_text()), "resumed": True}
    start = time.time()
    config = {"model_path": path, "chat_template": tokenizer.chat_template if fallback else None,
              "train": encoded["train"], "dev": encoded["dev"], "cfg": cfg.model_dump()}  # fmt: skip
    trainer = TorchTrainer(
        train_func,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu),
        # the fingerprint in the name: the same command resumes this run; a changed one starts a new run
        run_config=RunConfig(name=f"{name}-{fingerprint}", storage_path=storage,
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),  # fmt: skip
    )
    result = trainer.fit()
    metrics = dict(result.metrics)
    run_dir.mkdir(parents=True, exist_ok=True)
    with result.checkpoint.as_directory() as folder:
        target = run_dir / "model"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(Path(folder) / EXPORT, target)
    # The run is finished and its model exported (metrics.json marks it done): its checkpoints, weights and
    # optimizer state at about 3x the model's size, were only there to resume it. Local or s3:// alike.
    result.filesystem.delete_dir(result.path)
    history = json.loads((target / "log_history.json").read_text())
    _loss_chart(history, run_dir / "loss.png", name)
    metrics.update(run=name, fingerprint=fingerprint, wall_seconds=round(time.time() - start, 1), export=str(target))
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(f"[{name}] loss {metrics.get('train_loss')}, dev loss {metrics.get('eval_loss')}, "
        f"{metrics.get('real_tokens_per_second')} real tokens/s; model in {target}")  # fmt: skip
    return {**metrics, "resumed": False}


def train_func(config: dict) -> None:
    """One Ray Train worker: a Hugging Face Trainer over the packed or padded examples."""
    import functools
    import tempfile

    import ray.train
    import torch
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from atheus_ray.train.pack import collate, pack

    cfg = TrainConfig.model_validate(config["cfg"])
    tokenizer = AutoTokenizer.from_pretrained(config["model_path"])
    if config["chat_template"]:
        tokenizer.chat_template = config["chat_template"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = AutoModelForCausalLM.from_pretrained(
        config["model_path"], dtype=torch.bfloat16 if cfg.use_gpu else torch.float32
    )
    model.config.use_cache = False  # a KV cache disables the packed-sequence mask (and is useless in training)
    train_rows = pack(config["train"], cfg.max_length) if cfg.packing else config["train"]
    dev_rows = pack(config["dev"], cfg.max_length) if cfg.packing else config["dev"]
    # The Trainer writes its checkpoints to local scratch (the callback copies each to the run's storage). The
    # scratch is named after the run, so a rerun clears what a killed worker left, and it goes when the worker ends.
    context = ray.train.get_context()
    workdir = Path(tempfile.gettempdir()) / f"atheus-sft-{context.get_experiment_name()}-{context.get_world_rank()}"
    shutil.rmtree(workdir, ignore_errors=True)
    try:
        args = TrainingArguments(
            output_dir=str(workdir),
            per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            num_train_epochs=cfg.epochs,
            learning_rate=cfg.lr,
            lr_scheduler_type="cosine_with_min_lr",
            lr_scheduler_kwargs={"min_lr": cfg.min_lr},
            warmup_steps=cfg.warmup_ratio,
            weight_decay=cfg.weight_decay,
            adam_beta1=cfg.betas[0],
            adam_beta2=cfg.betas[1],
            max_grad_norm=cfg.max_grad_norm,
            logging_steps=1,
            save_strategy="steps",
            save_steps=cfg.save_steps,
            save_total_limit=1,
            eval_strategy="steps" if dev_rows else "no",
            eval_steps=cfg.save_steps,
            seed=cfg.seed,
            data_seed=cfg.seed,
            bf16=cfg.use_gpu,
            use_cpu=not cfg.use_gpu,
            fsdp="full_shard auto_wrap" if cfg.use_gpu and cfg.num_workers > 1 else "",
            train_sampling_strategy="random" if cfg.packing else "group_by_length",
            remove_unused_columns=False,
            report_to="none",
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=train_rows, eval_dataset=dev_rows or None,
            data_collator=functools.partial(collate, pad_id=pad_id, packed=cfg.packing),
            callbacks=[RayTrainReportCallback()],
        )  # fmt: skip
        trainer = prepare_trainer(trainer)
        resume, start_step = None, 0
        checkpoint = ray.train.get_checkpoint()
        if checkpoint:
            resume_dir = checkpoint.to_directory(str(workdir / "resume"))  # in the scratch, not /tmp's root
            resume = str(Path(resume_dir) / RayTrainReportCallback.CHECKPOINT_NAME)
            start_step = json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"]
        start = time.time()
        output = trainer.train(resume_from_checkpoint=resume)
        seconds = time.time() - start
        metrics = {"train_loss": round(output.training_loss, 4), "global_step": trainer.state.global_step,
                   "resumed_from_step": start_step, "train_seconds": round(seconds, 1)}  # fmt: skip
        if dev_rows:
            metrics["eval_loss"] = round(trainer.evaluate()["eval_loss"], 4)
        steps_per_epoch = max(1, trainer.state.max_steps / max(cfg.epochs, 1e-9))
        real_tokens = sum(len(r["input_ids"]) for r in config["train"])  # every token is real; padding is added later
        tokens_done = real_tokens * (trainer.state.global_step - start_step) / steps_per_epoch
        metrics["real_tokens_per_second"] = round(tokens_done * cfg.num_workers / max(seconds, 1e-9), 1)
        if cfg.use_gpu:
            params = sum(p.numel() for p in model.parameters())
            peak = cfg.gpu_peak_tflops * 1e12 * cfg.num_workers
            metrics["mfu"] = round(6 * params * metrics["real_tokens_per_second"] / peak, 4)  # 6 FLOPs/param/token
        with tempfile.TemporaryDirectory() as folder:
            export = Path(folder) / EXPORT
            trainer.save_model(str(export))  # every rank takes part (FSDP gathers the shards); rank 0 writes
            checkpoint = None
            if context.get_world_rank() == 0:
                tokenizer.save_pretrained(str(export))
                (export / "log_history.json").write_text(json.dumps(trainer.state.log_history))
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _loss_chart(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    dev = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if train:
        ax.plot(*zip(*train), label="train loss")
    if dev:
        ax.plot(*zip(*dev), "o-", label="dev loss")
    ax.set_xlabel("optimizer step")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
