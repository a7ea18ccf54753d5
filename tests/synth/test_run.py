"""Synthesis end to end with real vLLM on CPU (the embedded model) through ray.data.llm, and resume."""

import errno
import json
import sys

import datasets
import pyarrow.parquet as pq
import pytest

from atheus_ray.config import SynthConfig, load_config
from atheus_ray.engine import Engine
from atheus_ray.storage import Location
from atheus_ray.synth import run as synth_run
from atheus_ray.synth.run import synthesize

# Small and greedy, so two runs produce the same text (and so the same ids); one batch per LLM pass, so vLLM
# sees the same batches in both runs.
SMALL = [
    "seeds.paths=[seeds/fluency.jsonl,seeds/reasoning.jsonl]",
    "seeds.limit=6",
    "engine.batch_size=64",
    "self_instruct.requests=3",
    "self_instruct.tasks_per_request=3",
    "self_instruct.sampling.max_tokens=256",
    "self_instruct.sampling.temperature=0",
    "evol.rounds=1",
    "evol.sampling.max_tokens=160",
    "evol.sampling.temperature=0",
    "respond.sampling.max_tokens=24",
    "respond.sampling.temperature=0",
]


def small_config(out):
    return load_config(SynthConfig, "jobs/configs/synth.yaml", [*SMALL, f"out={out}"])


KANJI = "山川海空雨雪風花森林春夏秋冬朝昼夜星月日火水木金土石田畑町村駅橋道港船鳥魚犬猫米茶酒塩糖紙本机窓門庭池"


def scripted_text(key: str) -> str:
    """A request's own made-up task: letters drawn by the key, so no two are near-duplicates."""
    import random

    rng = random.Random(key)
    return "".join(rng.choice(KANJI) for _ in range(16)) + "の違いを説明してください。"


class ScriptedEngine(Engine):
    """Answers each pass by its request keys, no LLM: Self-Instruct tasks, Evol rewrites, 「異なる」 verdicts, and
    answers; the answer to a task with 長い is cut at max_tokens."""

    def generate(self, requests):
        self.passes += 1
        outputs = []
        for r in requests:
            key, prompt = r["key"], r["messages"][-1]["content"]
            if key.startswith("si/"):
                tasks = [
                    {
                        "instruction": scripted_text(f"{key}/{n}") + ("長い" if key.endswith("/0") and n == 0 else ""),
                        "input": "",
                    }
                    for n in range(2)
                ]
                text = json.dumps({"tasks": tasks}, ensure_ascii=False)
            elif key.startswith("evolve/"):
                text = json.dumps({"instruction": scripted_text(key), "input": ""}, ensure_ascii=False)
            elif key.startswith("judge/"):
                text = "異なる"
            else:
                text = f"お答えします。{prompt[:12]}については、順に説明します。"
            cut = key.startswith("answer/") and "長い" in prompt
            tokens = r["sampling_params"]["max_tokens"] if cut else 9
            outputs.append({"key": key, "text": text, "tokens_in": 20, "tokens_out": tokens, "error": None})
        return outputs


def scripted_config(out):
    return load_config(
        SynthConfig,
        "jobs/configs/synth.yaml",
        [
            "seeds.paths=[seeds/fluency.jsonl,seeds/reasoning.jsonl]",
            "seeds.limit=8",
            "self_instruct.requests=4",
            "evol.rounds=1",
            "respond.examples=2",
            "respond.example_chars=2000",
            "respond.drop_truncated=true",
            f"out={out}",
        ],
    )


def test_every_pass_on_a_scripted_engine_keeps_evolutions_with_their_examples(tmp_path, monkeypatch):
    """The whole synthesis with an engine that answers by script: evolutions survive and are answered with
    seed examples, an answer cut at max_tokens is rejected as truncated."""
    monkeypatch.setattr(synth_run, "init_ray", lambda ray: {"address": "none", "cpus": 0, "gpus": 0})
    cfg = scripted_config(tmp_path)
    with ScriptedEngine(cfg.model, cfg.engine, log=lambda m: None) as llm:
        manifest = synthesize(cfg, log=lambda m: None, llm=llm)
    responses = pq.read_table(tmp_path / "responses").to_pylist()
    evolved = [r for r in responses if r["origin"].startswith("evol")]
    assert evolved and all(r["response"] and len(r["response_examples"]) == 2 for r in responses)
    seeds = {
        json.loads(line)["id"]: json.loads(line)["perspective"]
        for name in ("fluency", "reasoning")
        for line in open(f"seeds/{name}.jsonl", encoding="utf-8")
    }
    for row in responses:
        assert all(seeds[e] == row["perspective"] and e not in row["seed_ids"] for e in row["response_examples"])
        assert row["category"]  # the category Self-Instruct asked for (an evolution keeps its parent's)
    rejected = pq.read_table(tmp_path / "rejected").to_pylist()
    assert [(r["stage"], r["reject_reason"]) for r in rejected if "長い" in (r["instruction"] or "")] == [
        ("responses", "truncated")
    ]
    assert manifest["rejected_by_reason"]["truncated"] == 1


@pytest.mark.parametrize(
    "code, message", [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")]
)
def test_a_full_or_read_only_disk_mid_run_stops_it_clearly_and_a_rerun_resumes(tmp_path, monkeypatch, code, message):
    """The disk fills up, or is remounted read-only, while the second stage writes its results (every write under
    it fails, at the storage layer): the run stops with the error naming the file; the first stage's state is
    whole, nothing half-written is left; once it is writable again, the same command resumes and ends as an
    unbroken run."""
    monkeypatch.setattr(synth_run, "init_ray", lambda ray: {"address": "none", "cpus": 0, "gpus": 0})

    def run(out):
        cfg = scripted_config(out)
        with ScriptedEngine(cfg.model, cfg.engine, log=lambda m: None) as llm:
            return synthesize(cfg, log=lambda m: None, llm=llm)

    run(tmp_path / "unbroken")
    write_bytes = Location.write_bytes

    def full(self, data):
        if "/evol_1/" in self.path:
            raise OSError(code, message, self.path)
        return write_bytes(self, data)

    out = tmp_path / "full"
    monkeypatch.setattr(Location, "write_bytes", full)
    with pytest.raises(OSError, match=message) as failure:
        run(out)
    assert str(out / "rejected" / "evol_1") in str(failure.value)  # the file it could not write
    assert json.loads((out / ".stages" / "self_instruct_1" / "done.json").read_text())["kept"] > 0
    assert not (out / ".stages" / "evol_1" / "done.json").exists() and not list(out.rglob(".*.tmp-*"))

    monkeypatch.setattr(Location, "write_bytes", write_bytes)
    manifest = run(out)
    assert [s["resumed"] for s in manifest["stages"]] == [True, False, False]
    for table in ("generated", "evolved", "responses"):
        ids = sorted(r["id"] for r in pq.read_table(out / table).to_pylist())
        assert ids == sorted(r["id"] for r in pq.read_table(tmp_path / "unbroken" / table).to_pylist()), table


@pytest.fixture(scope="module")
def full_run(ray_local, embedded_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_full")
    manifest = synthesize(small_config(out), log=lambda m: None)
    return out, manifest


@pytest.mark.slow
def test_synth_writes_every_output_with_lineage(full_run):
    out, manifest = full_run
    for name in ("generated", "evolved", "responses", "rejected"):
        assert (out / name).is_dir(), name
    assert json.loads((out / "manifest.json").read_text()) == manifest

    generated = pq.read_table(out / "generated").to_pylist()
    evolved = pq.read_table(out / "evolved").to_pylist()
    responses = pq.read_table(out / "responses").to_pylist()
    rejected = pq.read_table(out / "rejected").to_pylist()
    counts = manifest["counts"]
    assert (counts["generated"], counts["evolved"], counts["responses"], counts["rejected"]) == (
        len(generated),
        len(evolved),
        len(responses),
        len(rejected),
    )
    assert len(generated) > 0 and len(responses) >= len(generated)
    assert [s["stage"] for s in manifest["stages"]] == ["self_instruct_1", "evol_1", "responses"]
    assert manifest["tokens_out"] > 0 and manifest["versions"]["ray"]

    ids = [r["id"] for r in responses]
    assert len(ids) == len(set(ids))
    seed_ids = {sid for r in generated for sid in r["seed_ids"]}
    for row in responses:
        assert row["response"] and row["response_model"] == "SmolLM2-135M-Instruct"
        assert set(row["seed_ids"]) <= seed_ids and row["perspective"] and row["domain"]
        assert row["generator_model"] == "SmolLM2-135M-Instruct" and row["prompt_version"]
    shown = [(row, e) for row in responses for e in row["response_examples"]]
    assert shown  # a seed pair of the row's perspective, never one of its own seeds, was shown as an example
    assert all(e.split("-")[0] == row["perspective"] and e not in row["seed_ids"] for row, e in shown)
    for row in evolved:
        assert row["origin"].startswith("evol_") and row["round"] == 1 and row["parent_id"] in ids
    for row in generated:
        assert (row["origin"], row["round"], row["parent_id"]) == ("self_instruct", 0, None)

    assert all(r["reject_reason"] and r["stage"] for r in rejected)
    assert sum(manifest["rejected_by_reason"].values()) == len(rejected)
    assert datasets.load_dataset("parquet", data_dir=str(out / "responses"), split="train").num_rows == len(responses)


@pytest.mark.slow
def test_a_run_killed_at_three_points_resumes_to_the_same_ids(full_run, tmp_path, marked_run):
    """`atheus synth` as a subprocess, its process group SIGKILLed as the run starts (no stage done), once the
    first stage is done (the engine up, the next stage under way) and once the last stage is done (its outputs
    being written, or screening under way on the same engine); the same command each time, then `synthesize`
    to the end: the ids of the uninterrupted run in every table, and no process or vLLM file of a killed run
    left."""
    out_full, manifest_full = full_run
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "atheus_ray.cli", "synth", "--config", "jobs/configs/synth.yaml", "--out", str(out)]
    for override in SMALL:
        cmd += ["--set", override]

    def done(stage: str) -> bool:
        return (out / ".stages" / stage / "done.json").exists()

    def killed_when(ready, what: str, unfinished: str = "manifest.json") -> None:
        marked_run.killed_when(cmd, ready, what, tmp_path / f"console-{what}.txt")
        assert not (out / unfinished).exists(), what

    killed_when(lambda text: "ray: " in text, "as it starts")
    assert not done("self_instruct_1")
    killed_when(lambda text: done("self_instruct_1"), "after its first stage")
    assert not done("responses")
    killed_when(lambda text: done("responses"), "after its last stage", unfinished="screen.json")
    assert not list(out.rglob(".*.tmp-*"))

    manifest = synthesize(small_config(out), log=lambda m: None)  # every stage done: nothing to generate
    assert [s["resumed"] for s in manifest["stages"]] == [True, True, True]
    assert manifest["engine"]["starts"] == 0
    for table in ("generated", "evolved", "responses"):
        ids = [r["id"] for r in pq.read_table(out / table).to_pylist()]
        assert len(ids) == len(set(ids)) and sorted(ids) == sorted(
            r["id"] for r in pq.read_table(out_full / table).to_pylist()
        ), table
    assert manifest["counts"] == manifest_full["counts"]


def test_fingerprint_follows_config_seeds_and_prompts(tmp_path, monkeypatch):
    from atheus_ray.seeds import SEEDS_DIR, load_seeds
    from atheus_ray.synth import run

    seeds = load_seeds([SEEDS_DIR / "fluency.jsonl"])
    cfg = small_config(tmp_path)
    base = run.fingerprint(cfg, seeds)
    assert run.fingerprint(small_config(tmp_path / "elsewhere"), seeds) == base  # `out` does not count
    assert run.fingerprint(cfg.model_copy(update={"seed": 1}), seeds) != base
    # where and how fast the engine runs changes no row: finished stages survive a change of parallelism
    placement = {
        "concurrency": 4,
        "batch_size": 3,
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.9,
        "accelerator": "gpu",
        "resources": {"gen": 1},
        "enforce_eager": False,
    }
    assert run.fingerprint(cfg.model_copy(update={"engine": cfg.engine.model_copy(update=placement)}), seeds) == base
    assert run.fingerprint(cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"seed": 7})}), seeds) != base
    assert run.fingerprint(cfg, seeds[:-1]) != base
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "respond.md").write_text("別のプロンプト", encoding="utf-8")
    monkeypatch.setattr(run, "PROMPTS", prompts)
    assert run.fingerprint(cfg, seeds) != base
