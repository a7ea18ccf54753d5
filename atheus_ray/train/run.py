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
import math
import os
import re
import shutil
import threading
import time
from pathlib import Path

import ray
from ray.util.queue import Queue

from atheus_ray import models
from atheus_ray.config import ConfigError, TrainConfig
from atheus_ray.console import progress
from atheus_ray.ray_init import init_ray
from atheus_ray.storage import Location, save_figure
from atheus_ray.train import memory
from atheus_ray.train.data import load_condition, subsample_and_split
from atheus_ray.train.pack import pack
from atheus_ray.train.tokens import encode, ensure_chat_template

EXPORT = "export"
MIN_LEARNING_STEPS = 3  # fewer optimizer steps at a non-zero learning rate leave the model near its base: say so
MIN_STEPS_TO_CHECKPOINT = 10  # a run this long must write a checkpoint before its end (train.save_steps)
# Settings that do not change a trained model: where things go, how often it checkpoints, placement, memory
NOT_IN_FINGERPRINT = {
    "out",
    "storage_path",
    "ray",
    "models",
    "conditions",
    "save_steps",
    "gpu_peak_tflops",
    "activation_checkpointing",
    "gpu_memory_gb",
    "resources_per_worker",
}


def run_name(condition: str, model_source: str) -> str:
    """`<condition>-<model>` with only filename-safe characters."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{condition}-{models.display_name(model_source)}")


def train(cfg: TrainConfig, log=print) -> dict:
    """Train every condition x model; return the summary written to OUT/train.json."""
    from transformers import AutoTokenizer

    start = time.time()
    out = Location(cfg.out)
    storage = str(Location(cfg.storage_path) if cfg.storage_path else out / "checkpoints")
    data = {c.name: load_condition(c) for c in cfg.conditions}
    for name, (examples, dropped) in data.items():
        log(f"condition {name}: {len(examples)} examples" + (f", dropped {dict(dropped)}" if dropped else ""))
    n = cfg.examples or min(len(examples) for examples, _ in data.values())
    if n < 2:
        raise ConfigError(f"examples: {n} training example(s) per condition; at least 2 are needed")
    where = init_ray(cfg.ray)
    log(f"ray: {where['address']} ({where['cpus']:g} CPUs, {where['gpus']:g} GPUs); {n} examples per condition")
    runs = []
    gpu_gb = (cfg.gpu_memory_gb or _probe_gpu_gb(cfg)) if cfg.use_gpu else None
    for source in cfg.models:
        path = models.resolve(source)
        tokenizer = AutoTokenizer.from_pretrained(path)
        fallback = ensure_chat_template(tokenizer)
        plan = _memory_plan(cfg, path, source, gpu_gb)
        of_gpu = f" of the GPU's {gpu_gb:.1f} GB" if gpu_gb else " (CPU: not checked)"
        log(f"[{models.display_name(source)}] memory plan: {plan.describe()}{of_gpu}")
        for condition in cfg.conditions:
            examples, dropped = data[condition.name]
            train_rows, dev_rows, too_long = subsample_and_split(
                examples, n, cfg.dev_fraction, cfg.seed, lambda r: encode(r["messages"], tokenizer, cfg.max_length)
            )
            encoded = {"train": train_rows, "dev": dev_rows}
            name = run_name(condition.name, source)
            fingerprint = _fingerprint(cfg, path, encoded)
            if not encoded["train"]:
                raise ConfigError(
                    f"train.max_length: every example of condition {condition.name!r} is longer than "
                    f"{cfg.max_length} tokens for {models.display_name(source)}"
                )
            steps = planned_steps(cfg, encoded["train"])
            log(
                f"[{name}] {len(encoded['train'])} train / {len(encoded['dev'])} dev examples, {steps} optimizer steps"
                + (f"; skipped {too_long} longer than {cfg.max_length} tokens" if too_long else "")
            )
            if warning := few_steps_warning(cfg, steps):
                log(f"[{name}] warning: {warning}")
            if steps >= MIN_STEPS_TO_CHECKPOINT and cfg.save_steps >= steps:
                raise ConfigError(
                    f"train.save_steps: {cfg.save_steps}, but {name} has {steps} optimizer steps: it "
                    f"would write no checkpoint before its end, and a crash would restart it from step "
                    f"0; set save_steps to at most {steps - 1} (e.g. {max(1, steps // 4)})"
                )
            runs.append(
                _fit(name, fingerprint, path, tokenizer, fallback, encoded, cfg, storage, out / name, log)
                | {
                    "condition": condition.name,
                    "model": source,
                    "license": condition.license,
                    "dropped": dict(dropped),
                    "too_long": too_long,
                }
            )
    summary = {
        "runs": runs,
        "wall_seconds": round(time.time() - start, 1),
        "storage_path": storage,
        "summary": str(out / "train.json"),
    }
    (out / "train.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return summary


def learning_steps(cfg: TrainConfig, steps: int) -> int:
    """Optimizer steps taken at a non-zero learning rate: linear warmup over ceil(warmup_ratio x steps) steps
    (as transformers counts a ratio) starts at 0, so with any warmup the first step changes nothing."""
    return steps - (1 if math.ceil(cfg.warmup_ratio * steps) > 0 else 0)


def few_steps_warning(cfg: TrainConfig, steps: int) -> str | None:
    """What to say of a run of `steps` optimizer steps whose schedule leaves the model near its base (fewer than
    MIN_LEARNING_STEPS of them at a non-zero learning rate); None when it does not."""
    learning = learning_steps(cfg, steps)
    if learning >= MIN_LEARNING_STEPS:
        return None
    advice = "the model will barely move from its base; give it more examples or epochs"
    if learning < steps:  # the warmup's first step is at learning rate 0
        return (
            f"only {learning} of its {steps} optimizer step(s) have a non-zero learning rate (warmup_ratio "
            f"{cfg.warmup_ratio:g} starts at 0): {advice}, or set train.warmup_ratio=0"
        )
    return f"only {steps} optimizer step(s): {advice}"


def planned_steps(cfg: TrainConfig, train_rows: list[dict]) -> int:
    """Optimizer steps of a run, as the Trainer will count them: sequences (packed or not) split over the
    workers into micro-batches, `grad_accum` micro-batches a step, `epochs` times."""
    sequences = len(pack(train_rows, cfg.max_length)) if cfg.packing else len(train_rows)
    micro_batches = math.ceil(sequences / cfg.num_workers / cfg.batch_size)
    return max(1, math.ceil(cfg.epochs * max(1, micro_batches // cfg.grad_accum)))


def _memory_plan(cfg: TrainConfig, path: str, source: str, gpu_gb: float | None) -> memory.Plan:
    """The per-GPU memory estimate of training `path` (atheus_ray.train.memory); on GPU, MemoryPlanError when it
    does not fit `gpu_gb`. Raised here, on the driver, before any worker starts."""
    from transformers import AutoConfig

    shape = memory.ModelShape.from_config(AutoConfig.from_pretrained(path))
    workers = cfg.num_workers if cfg.use_gpu else 1
    if gpu_gb is None:
        return memory.estimate(shape, cfg.batch_size, cfg.max_length, workers, cfg.activation_checkpointing)
    return memory.check(
        shape,
        cfg.batch_size,
        cfg.max_length,
        workers,
        cfg.activation_checkpointing,
        gpu_gb,
        models.display_name(source),
    )


def cpu_worker_env() -> dict:
    """The runtime env of a CPU training worker: the jemalloc that ships with Ray, told to keep the memory it frees.
    glibc's malloc hands every large tensor back to the kernel when it is freed, and each step faults the same
    gigabytes in again: measured on 2 cores (SmolLM2-135M, 3 steps of 4 x 512 tokens, forward, backward, AdamW),
    67.6 s with glibc (40 s of it in the kernel), 48.1 s with this (17.6 s). The worker's memory stays at its peak
    until it exits, which it does when its run ends. On GPU the tensors live on the device: nothing changes."""
    jemalloc = Path(ray.__file__).parent / "core" / "libjemalloc.so"
    if not jemalloc.exists():
        return {}
    return {"env_vars": {"LD_PRELOAD": str(jemalloc), "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"}}


def _probe_gpu_gb(cfg: TrainConfig) -> float:
    """Memory of one GPU the training workers would get, read by a one-GPU Ray task with the same resources."""

    @ray.remote(num_gpus=1, resources=cfg.resources_per_worker or None)
    def total_memory() -> float:
        import torch

        return torch.cuda.get_device_properties(0).total_memory / memory.GB

    return ray.get(total_memory.remote())


def _fingerprint(cfg: TrainConfig, path: str, encoded: dict) -> str:
    """What a run's result depends on: the training settings (less NOT_IN_FINGERPRINT), the model, the tokenized
    examples."""
    h = hashlib.sha256(json.dumps(cfg.model_dump(exclude=NOT_IN_FINGERPRINT), sort_keys=True).encode())
    h.update(path.encode())
    h.update(json.dumps(encoded).encode())
    return h.hexdigest()[:12]


def _fit(
    name, fingerprint, path, tokenizer, fallback, encoded, cfg: TrainConfig, storage, run_dir: Location, log
) -> dict:
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    done = run_dir / "metrics.json"
    if done.exists() and json.loads(done.read_text()).get("fingerprint") == fingerprint:
        log(f"[{name}] trained in an earlier run: reusing {run_dir / 'model'}")
        _delete_checkpoints(storage, f"{name}-{fingerprint}")  # left by a driver that died before deleting them
        return {**json.loads(done.read_text()), "resumed": True}
    start = time.time()
    config = {
        "model_path": path,
        "chat_template": tokenizer.chat_template if fallback else None,
        "train": encoded["train"],
        "dev": encoded["dev"],
        "cfg": cfg.model_dump(),
    }
    # rank 0 puts its step count here as it trains; a thread of this process shows it (atheus_ray.console)
    steps = Queue(actor_options={"num_cpus": 0})
    config["progress"] = steps
    device = {"GPU": 1} if cfg.use_gpu else {"CPU": 1}
    trainer = TorchTrainer(
        train_func,
        train_loop_config=config,
        # STRICT_PACK on GPU: every FSDP worker on one node (NVLink), never spread over pods (TCP)
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker={**device, **cfg.resources_per_worker},
            placement_strategy="STRICT_PACK" if cfg.use_gpu else "PACK",
        ),
        # the fingerprint in the name: the same command resumes this run; a changed one starts a new run
        run_config=RunConfig(
            name=f"{name}-{fingerprint}",
            storage_path=storage,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            worker_runtime_env=None if cfg.use_gpu else cpu_worker_env(),
        ),
    )
    stop = threading.Event()
    watcher = threading.Thread(target=_show_progress, args=(steps, stop, f"[{name}] steps", log), daemon=True)
    watcher.start()
    try:
        result = trainer.fit()
    finally:
        stop.set()
        watcher.join()
        ray.kill(steps.actor)
    metrics = dict(result.metrics)
    target = run_dir / "model"
    with result.checkpoint.as_directory() as folder:  # on an object store, downloaded to a local folder first
        history = json.loads((Path(folder) / EXPORT / "log_history.json").read_text())
        target.upload(Path(folder) / EXPORT)
    # Ray's LLM libraries file a download of an s3:// / gs:// model under the name its `hash` file gives: a new
    # export of the same candidate is then a new snapshot on the serving node, not the last run's files
    (target / "hash").write_text(fingerprint)
    _loss_chart(history, run_dir / "loss.png", name)
    metrics.update(run=name, fingerprint=fingerprint, wall_seconds=round(time.time() - start, 1), export=str(target))
    # the run is done from here on; a crash before this line resumes from the final checkpoint
    done.write_text(json.dumps(metrics, indent=2))
    # Finished and exported: its checkpoints, weights and optimizer state at about 3x the model's size, were only
    # there to resume it. Local or s3:// alike; a crash before this is mended by the next run's reuse above.
    result.filesystem.delete_dir(result.path)
    log(
        f"[{name}] loss {metrics.get('train_loss')}, dev loss {metrics.get('eval_loss')}, "
        f"{metrics.get('real_tokens_per_second')} real tokens/s; model in {target}"
    )
    return {**metrics, "resumed": False}


def _show_progress(steps, stop: threading.Event, label: str, log) -> None:
    """Show the (step, max steps) pairs rank 0 puts in `steps` until `stop` is set."""
    from ray.util.queue import Empty

    bar, done = None, 0
    try:
        while not stop.is_set():
            try:
                step, total = steps.get(timeout=1.0)
            except Empty:
                continue
            except Exception:  # the queue's actor is gone: no more progress to show
                return
            bar = bar or progress(total, label, log, unit="step")
            bar.update(step - done)
            done = step
    finally:
        if bar is not None:
            bar.close()


def train_func(config: dict) -> None:
    """One Ray Train worker: a Hugging Face Trainer over the packed or padded examples."""
    import functools
    import tempfile

    import pyarrow.fs
    import ray.train
    import torch
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    from atheus_ray.train.pack import collate, pack

    class StepCounter(TrainerCallback):
        """After each optimizer step, rank 0 tells the driver where it is (`_show_progress`); after the last
        one, no trainer checkpoint is saved (the export is the final checkpoint)."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                config["progress"].put_nowait((state.global_step, state.max_steps))
            # The Trainer saves a checkpoint after its last step (weights and optimizer, ~12 bytes a parameter:
            # 1.6 GB for 135M, ~45 GB for 3.7B) that RayTrainReportCallback then uploads; the export below is
            # the run's final checkpoint, so that save would only be thrown away. Periodic saves are kept.
            if state.global_step >= state.max_steps:
                control.should_save = False
            return control

    cfg = TrainConfig.model_validate(config["cfg"])
    context = ray.train.get_context()
    if not cfg.use_gpu:  # Ray sets OMP_NUM_THREADS to the worker's 1 CPU; share the node's cores instead
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // context.get_local_world_size()))
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
    workdir = Path(tempfile.gettempdir()) / f"atheus-sft-{context.get_experiment_name()}-{context.get_world_rank()}"
    shutil.rmtree(workdir, ignore_errors=True)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:  # the final checkpoint (the export) holds train_metrics.json: the run had finished
        final = f"{checkpoint.path}/{EXPORT}/train_metrics.json"
        if checkpoint.filesystem.get_file_info(final).type != pyarrow.fs.FileType.NotFound:
            with checkpoint.filesystem.open_input_stream(final) as f:
                metrics = json.loads(f.read())
            ray.train.report(metrics, checkpoint=checkpoint if context.get_world_rank() == 0 else None)
            return
    fsdp = cfg.use_gpu and cfg.num_workers > 1
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
            # FSDP2 full shard, each decoder layer its own unit (transformers' default wrap policy)
            fsdp=True if fsdp else None,
            fsdp_config={
                "version": 2,
                "reshard_after_forward": True,
                "activation_checkpointing": cfg.activation_checkpointing,
            }
            if fsdp
            else None,
            gradient_checkpointing=cfg.activation_checkpointing and not fsdp,
            train_sampling_strategy="random" if cfg.packing else "group_by_length",
            remove_unused_columns=False,
            report_to="none",
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train_rows,
            eval_dataset=dev_rows or None,
            data_collator=functools.partial(collate, pad_id=pad_id, packed=cfg.packing),
            callbacks=[RayTrainReportCallback(), StepCounter()],
        )
        trainer = prepare_trainer(trainer)
        resume, start_step = None, 0
        if checkpoint:
            resume_dir = checkpoint.to_directory(str(workdir / "resume"))  # in the scratch, not /tmp's root
            resume = str(Path(resume_dir) / RayTrainReportCallback.CHECKPOINT_NAME)
            start_step = json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"]
        start = time.time()
        output = trainer.train(resume_from_checkpoint=resume)
        seconds = time.time() - start
        metrics = {
            "train_loss": round(output.training_loss, 4),
            "global_step": trainer.state.global_step,
            "resumed_from_step": start_step,
            "train_seconds": round(seconds, 1),
        }
        if dev_rows:
            metrics["eval_loss"] = round(trainer.evaluate()["eval_loss"], 4)
        steps_per_epoch = max(1, trainer.state.max_steps / max(cfg.epochs, 1e-9))
        real_tokens = sum(len(r["input_ids"]) for r in config["train"])  # every token is real; padding is added later
        # all workers together: steps_per_epoch already counts every worker's share of the examples
        tokens_done = real_tokens * (trainer.state.global_step - start_step) / steps_per_epoch
        metrics["real_tokens_per_second"] = round(tokens_done / max(seconds, 1e-9), 1)
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
                (export / "train_metrics.json").write_text(json.dumps(metrics))  # marks the final checkpoint
                checkpoint = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _delete_checkpoints(storage: str, experiment: str) -> None:
    """Delete a run's folder under `storage_path` (local, NFS or an object store) if it is there."""
    (Location(storage) / experiment).delete()


def _loss_chart(history: list[dict], path: Location, title: str) -> None:
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
    save_figure(fig, path)
    plt.close(fig)
