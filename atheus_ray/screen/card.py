"""The data set card: `DIR/README.md` with the funnel and the distributions of the final rows, and PNG charts
in `DIR/charts/`. Every number comes from the summary that `screen.json` holds, computed from the rows written
to `final/`, so the card, the JSON and the Parquet agree.

Reads:  the final rows' `perspective`, `domain`, `task_category`, `difficulty`, `score`, `quality`.
"""

from __future__ import annotations

from collections import Counter

from atheus_ray.storage import Location, save_figure

DISTRIBUTIONS = ("perspective", "domain", "task_category", "difficulty", "quality", "score")
MADE_BY = (
    "generator_model",
    "prompt_version",
    "response_model",
    "response_prompt_version",
    "tagger_model",
    "tagger_prompt_version",
)
EXAMPLE_CHARS = 80
ORDINAL = {"difficulty", "quality", "score"}  # shown in value order, not by count


def funnel(n_in: int, report: list[dict]) -> list[dict]:
    """Rows in, then per stage: rows dropped (by reason) and rows left."""
    steps = [{"stage": "input", "dropped": 0, "left": n_in, "by_reason": {}}]
    for stage in report:
        steps.append(
            {
                "stage": stage["stage"],
                "dropped": stage["rejected"],
                "left": stage["kept"],
                "by_reason": dict(sorted(stage["rejected_by_reason"].items())),
            }
        )
    return steps


def synthesis_funnel(manifest: dict) -> list[dict]:
    """The synthesis stages as funnel steps: the seeds, then per stage the rows made so far and the rows it
    dropped (by reason), from a synthesis manifest."""
    return [
        {"stage": "seeds", "dropped": 0, "left": manifest["counts"]["seeds"], "by_reason": {}},
        *funnel(0, manifest["stages"])[1:],
    ]


def made_by(rows: list[dict]) -> dict[str, list[str]]:
    """The models and prompt versions that wrote the rows (each column's distinct values)."""
    return {column: sorted({str(r[column]) for r in rows if r.get(column)}) for column in MADE_BY}


def examples(rows: list[dict]) -> dict[str, dict]:
    """The best-ranked row of each perspective (rows come best first), its texts cut to EXAMPLE_CHARS."""
    shown: dict[str, dict] = {}
    for row in rows:
        shown.setdefault(
            row.get("perspective") or "(none)",
            {
                "id": row["id"],
                "instruction": _short(row["instruction"]),
                "response": _short(row.get("response") or ""),
            },
        )
    return shown


def size_category(n: int) -> str:
    """The Hugging Face hub's size category of a data set of n rows."""
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return name
    return "1M<n<10M"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "…"


def _cell(text: str) -> str:
    """Text made safe for a Markdown table cell: no pipes, no markup."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("<", "&lt;")


def distributions(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Counts of each distribution column's values among `rows` (null shown as "(none)")."""
    result = {}
    for column in DISTRIBUTIONS:
        counts = Counter("(none)" if row.get(column) is None else str(row[column]) for row in rows)
        if column in ORDINAL:
            result[column] = {
                k: counts[k] for k in sorted(counts, key=lambda v: (not v.isdigit(), int(v) if v.isdigit() else 0))
            }
        else:
            result[column] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return result


def write_card(out: Location, summary: dict) -> Location:
    """Write DIR/README.md and DIR/charts/*.png from a screening summary."""
    charts = _charts(out / "charts", summary)
    made = summary.get("synthesis_tokens") or {"in": 0, "out": 0}
    lines = [
        "---",
        f"license: {summary.get('license') or 'other'}",
        "language: [ja]",
        "task_categories: [text-generation]",
        f"size_categories: [{size_category(summary['rows_out'])}]",
        "pretty_name: Japanese instruction data (atheus_ray)",
        "configs:",
        "- config_name: default",
        "  data_files: final/*.parquet",
        "---",
        "",
        "# Japanese instruction data (atheus_ray)",
        "",
        f"{summary['rows_out']:,} instruction-answer pairs, screened from {summary['rows_in']:,} "
        f"(source: `{summary['source'] or 'in-memory rows'}`; tagger: `{summary['tagger_model']}`).",
        "",
        "## Load",
        "",
        "```python",
        "import datasets",
        'rows = datasets.load_dataset("path/to/this/folder", split="train")  # the configs above: final/*.parquet',
        "```",
        "",
        "Chat-format training data is in `sft/train.jsonl`; every dropped row is in `rejected/<stage>/` with its "
        "`reject_reason`.",
        "",
        "## License",
        "",
        f"`{summary.get('license') or 'other'}`. {summary.get('license_reasoning') or ''}".rstrip(),
        "",
        "## Made by",
        "",
        "| | |",
        "|---|---|",
        *[
            f"| {column} | {', '.join(f'`{v}`' for v in values) or '(none)'} |"
            for column, values in summary.get("made_by", {}).items()
        ],
        f"| tokens (prompt / generated) | synthesis {made['in']:,} / {made['out']:,}; "
        f"screening {summary['tokens_in']:,} / {summary['tokens_out']:,} |",
        "",
    ]
    if summary.get("examples"):
        lines += [
            "## Examples",
            "",
            "The best-scored row of each perspective, cut short.",
            "",
            "| perspective | instruction | response |",
            "|---|---|---|",
        ]
        lines += [
            f"| {p} | {_cell(e['instruction'])} | {_cell(e['response'])} |" for p, e in summary["examples"].items()
        ]
        lines += [""]
    if summary.get("synthesis"):
        lines += ["## Synthesis", "", "Rows made so far after each stage, and the ones each stage dropped.", ""]
        lines += _funnel_table(summary["synthesis"], "rows")
    if summary.get("characteristics"):
        lines += [
            "## QA4AI quality characteristics",
            "",
            "Every row carries the perspective of the seeds it grew from. The perspectives map onto the five "
            "quality characteristics that public material on the QA4AI guideline's LLM chapter (2025.04 edition) "
            "names; the mapping is atheus_ray's reading of that material (`seeds/taxonomy.yaml`), not the "
            "guideline's own table.",
            "",
            "| characteristic | rows | perspectives (rows) |",
            "|---|---:|---|",
        ]
        lines += [
            f"| {qc} | {sum(per.values())} | {', '.join(f'{p} {n}' for p, n in per.items())} |"
            for qc, per in summary["characteristics"].items()
        ]
        lines += [""]
    lines += ["## Screening", "", "The answered rows through each screening stage.", ""]
    lines += _funnel_table(summary["funnel"], "left")
    lines += ["![funnel](charts/funnel.png)", ""]
    for column, counts in summary["distributions"].items():
        lines += [f"## {column}", "", f"| {column} | rows |", "|---|---:|"]
        lines += [f"| {value} | {n} |" for value, n in counts.items()]
        lines += ["", f"![{column}](charts/{column}.png)", ""] if column in charts else [""]
    lines += [
        "## Columns",
        "",
        "Lineage: `id` (content hash), `parent_id`, `seed_ids`, `origin`, `round`, `domain`, `perspective`, "
        "`generator_model`, `prompt_version`. Screening: `ja_ratio` (Japanese share of the answer), `refusal` "
        "(the answer declines; kept only for a harmful request), `quality` (input quality 1-5) and "
        "`quality_reason`, `difficulty` (1-5) and `difficulty_reason`, `task_category`, `request_safety` (the "
        "request) and `safety` (the answer), `safety_category`, `score` (response quality 1-10) and "
        "`score_reason`, `dup_of`, `tagger_model`, "
        "`tagger_prompt_version`.",
        "",
    ]
    return (out / "README.md").write_text("\n".join(lines))


def _funnel_table(steps: list[dict], left: str) -> list[str]:
    lines = [f"| stage | dropped | {left} | dropped by reason |", "|---|---:|---:|---|"]
    for step in steps:
        reasons = ", ".join(f"{k} {v}" for k, v in step["by_reason"].items())
        lines.append(f"| {step['stage']} | {step['dropped']} | {step['left']} | {reasons} |")
    return [*lines, ""]


def _charts(folder: Location, summary: dict) -> set[str]:
    """One bar chart per distribution and one of the funnel; return the names drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = set()
    bars = {"funnel": {step["stage"]: step["left"] for step in summary["funnel"]}, **summary["distributions"]}
    for name, counts in bars.items():
        if not counts:
            continue
        labels, values = list(counts)[:30], list(counts.values())[:30]  # keys are ASCII: no CJK font needed
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(labels) + 1.2))
        ax.barh(labels[::-1], values[::-1], color="#4c72b0")
        ax.set_title("rows left after each stage" if name == "funnel" else f"final rows by {name}")
        for y, v in enumerate(values[::-1]):
            ax.text(v, y, f" {v}", va="center", fontsize=8)
        fig.tight_layout()
        save_figure(fig, folder / f"{name}.png")
        plt.close(fig)
        drawn.add(name)
    return drawn
