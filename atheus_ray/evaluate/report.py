"""The evaluation report: `results.json` (every number), `report.md` and `report.html` (tables made from
results.json) and `win_rates.png` (candidate X's win rate against Y per model, with its 95% CI).

Reads:  results = {"judge_model", "tasks", "comparisons": [{"model", "x", "y", **stats.summarize(...)}]}.
"""

from __future__ import annotations

import html
import json

from atheus_ray.storage import Location, save_figure

COLUMNS = (
    "model",
    "x",
    "y",
    "wins",
    "ties",
    "losses",
    "invalid",
    "errors",
    "answer_errors",
    "win_rate",
    "ci95",
    "sign_test_p",
    "position_consistency",
    "first_slot_rate",
)


def _cell(value) -> str:
    if isinstance(value, list):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def rows(results: dict) -> list[list[str]]:
    return [[_cell(c.get(k)) for k in COLUMNS] for c in results["comparisons"]]


def write_report(out: Location, results: dict) -> dict[str, Location]:
    """Write results.json, report.md, report.html and win_rates.png into `out`; return their paths."""
    paths = {
        "results": out / "results.json",
        "markdown": out / "report.md",
        "html": out / "report.html",
        "chart": out / "win_rates.png",
    }
    paths["results"].write_text(json.dumps(results, ensure_ascii=False, indent=2))
    _chart(results, paths["chart"])
    intro = (
        f"Pairwise judgments by `{results['judge_model']}` on {results['tasks']} tasks, each pair in both "
        "orders. Win rate: X's wins + half its ties over readable judgments; CI: 95% cluster bootstrap over "
        "tasks; p: exact sign test over tasks; answer_errors: tasks left out because an answer was an error "
        "(an HTTP error, e.g. a prompt too long for the model)."
    )
    table = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    table += ["| " + " | ".join(r) + " |" for r in rows(results)]
    scores = ["| model | candidate | mean score (1-5) | ci95 | scored | invalid |", "|---|---|---|---|---|---|"]
    scores += [
        f"| {a['model']} | {a['candidate']} | {_cell(a['mean'])} | {_cell(a['ci95'])} | {a['scored']} | "
        f"{a['invalid']} |"
        for a in results.get("absolute", [])
    ]
    paths["markdown"].write_text(
        "\n".join(
            [
                "# Evaluation report",
                "",
                intro,
                "",
                *table,
                "",
                "![win rates](win_rates.png)",
                "",
                "## Absolute scores (ELYZA-style)",
                "",
                *scores,
                "",
            ]
        )
    )
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows(results))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    paths["html"].write_text(
        f"<!doctype html><meta charset='utf-8'><title>atheus_ray evaluation</title><h1>Evaluation report</h1>"
        f"<p>{html.escape(intro)}</p><table border='1' cellpadding='4'><tr>{head}</tr>{cells}</table>"
        f"<p><img src='win_rates.png' alt='win rates'></p>"
    )
    return paths


def _chart(results: dict, path: Location) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comparisons = [c for c in results["comparisons"] if c.get("win_rate") is not None]
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(comparisons) + 2), 4))
    labels = [f"{c['model']}\n{c['x']} vs {c['y']}" for c in comparisons]
    rates = [c["win_rate"] for c in comparisons]
    errors = [
        [r - c["ci95"][0] for r, c in zip(rates, comparisons)],
        [c["ci95"][1] - r for r, c in zip(rates, comparisons)],
    ]
    ax.bar(labels, rates, yerr=errors, capsize=6, color="#4c72b0")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate of X (ties count half)")
    ax.set_title("pairwise win rate with 95% CI")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
