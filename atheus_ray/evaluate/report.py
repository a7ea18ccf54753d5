"""The evaluation report: `results.json` (every number), `report.md` and `report.html` (made from the same
numbers) and `win_rates.png` (candidate X's win rate against Y per model, with its 95% CI).

Per model: the comparison's counts, win rate, CI and sign test; the judge's position and length diagnostics,
each with a sentence that says what it means for this run; the absolute 1-5 scores; and a per-task table a
person can scan (the task, X's and Y's answers side by side, the verdict with X shown first and with Y shown
first, X's score on the task, both 1-5 scores). The HTML is one self-contained file (styles and the chart
inside it): it opens in a browser with no network, and still shows everything once copied off an object store.

Reads: results = {"judge_model", "tasks", "comparisons": [{"model", "x", "y", **stats.summarize(...)}],
"absolute": [{"model", "candidate", **stats.absolute(...)}]}; the tasks ({id, input}); the answers
{(model, candidate, task id): text or None}; the judgment records (atheus_ray.evaluate.judge).
"""

from __future__ import annotations

import base64
import html
import json

from atheus_ray.evaluate.stats import READABLE, x_score
from atheus_ray.storage import Location, figure_png

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
TASK_COLUMNS = ("task", "X answer", "Y answer", "X shown first", "Y shown first", "X's score", "X 1-5", "Y 1-5")
LEGEND = (
    "X shown first / Y shown first: the answer the judge preferred when X's (Y's) answer was shown first; "
    "X's score: X's mean over the task's readable verdicts (1: X both times, 0.5: a tie or one each, 0: Y both "
    "times); X 1-5, Y 1-5: the absolute scores."
)
MD_CHARS = 160  # a cell of the Markdown per-task table is cut here (the HTML shows every answer whole)


def _cell(value) -> str:
    if isinstance(value, list):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def rows(results: dict) -> list[list[str]]:
    return [[_cell(c.get(k)) for k in COLUMNS] for c in results["comparisons"]]


def diagnostics(c: dict) -> list[str]:
    """What the judge's position and length checks say about one comparison, a sentence each."""
    said = []
    if c.get("position_consistency") is not None:
        said.append(
            f"Position consistency {c['position_consistency']:.2f}: in that share of the tasks judged in both "
            "orders, the judge preferred the same answer (or a tie) both times; a judge that follows the slot "
            "rather than the answers scores near 0, and its win rate says little."
        )
    if c.get("first_slot_rate") is not None:
        rate = c["first_slot_rate"]
        lean = "no lean" if abs(rate - 0.5) < 0.1 else f"a lean to the {'first' if rate > 0.5 else 'second'} slot"
        said.append(
            f"First-slot rate {rate:.2f}: the share of decisive verdicts that went to whichever answer was "
            f"shown first; 0.5 is no position bias, this is {lean}. Every pair is judged in both orders, so a "
            "lean cancels out of the win rate, but it costs the comparison its power."
        )
    buckets = c.get("by_length_ratio") or {}
    wheres = {
        "<0.8": "when X's answer is shorter than 0.8x Y's",
        "0.8-1.25": "at similar length",
        ">1.25": "when it is longer than 1.25x",
    }
    parts = [
        f"{buckets[key]['win_rate']:.2f} {where} (n {buckets[key]['n']})"
        for key, where in wheres.items()
        if buckets.get(key, {}).get("win_rate") is not None
    ]
    if parts:
        said.append(
            f"By length: X's win rate is {', '.join(parts)}; a rate that climbs with X's length says the judge "
            "rewards longer answers rather than better ones."
        )
    return said


def _verdict(order: str, verdict: str | None) -> str:
    if verdict is None:
        return ""
    if verdict not in READABLE:
        return verdict  # invalid | error
    return {1.0: "X", 0.5: "tie", 0.0: "Y"}[x_score(order, verdict)]


def per_task(comparison: dict, tasks: list[dict], answers: dict, judgments: list[dict]) -> list[dict]:
    """One row per task of a comparison: the answers, both verdicts (as X / Y / tie), X's mean score on the task
    over its readable verdicts, and both candidates' 1-5 scores."""
    group, x, y = comparison["model"], comparison["x"], comparison["y"]
    found: dict[tuple, str] = {}
    for j in judgments:
        if j.get("group") != group:
            continue
        slot = j["order"] if j["order"] != "score" else ("score", j.get("candidate"))
        found[j["task_id"], slot] = j["verdict"]
    table = []
    for task in tasks:
        xy, yx = found.get((task["id"], "XY")), found.get((task["id"], "YX"))
        readable = [x_score(o, v) for o, v in (("XY", xy), ("YX", yx)) if v in READABLE]
        table.append(
            {
                "task_id": task["id"],
                "input": task["input"],
                "x_answer": answers.get((group, x, task["id"])),
                "y_answer": answers.get((group, y, task["id"])),
                "x_first": _verdict("XY", xy),
                "y_first": _verdict("YX", yx),
                "x_score": sum(readable) / len(readable) if readable else None,
                "x_points": found.get((task["id"], ("score", x))),
                "y_points": found.get((task["id"], ("score", y))),
            }
        )
    return table


def _md(text: str | None, cut: int = MD_CHARS) -> str:
    if text is None:
        return "*(no answer)*"
    text = text if len(text) <= cut else text[:cut] + "…"
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", "<br>")


def _task_cells(row: dict) -> list:
    return [
        row["input"],
        row["x_answer"],
        row["y_answer"],
        row["x_first"],
        row["y_first"],
        "" if row["x_score"] is None else f"{row['x_score']:g}",
        row["x_points"] or "",
        row["y_points"] or "",
    ]


def write_report(
    out: Location, results: dict, tasks: list[dict], answers: dict, judgments: list[dict]
) -> dict[str, Location]:
    """Write results.json, report.md, report.html and win_rates.png into `out`; return their paths."""
    paths = {
        "results": out / "results.json",
        "markdown": out / "report.md",
        "html": out / "report.html",
        "chart": out / "win_rates.png",
    }
    paths["results"].write_text(json.dumps(results, ensure_ascii=False, indent=2))
    chart = _chart(results)
    paths["chart"].write_bytes(chart)
    intro = (
        f"Pairwise judgments by `{results['judge_model']}` on {results['tasks']} tasks, each pair in both "
        "orders. Win rate: X's wins + half its ties over readable judgments; CI: 95% cluster bootstrap over "
        "tasks; p: exact sign test over tasks; answer_errors: tasks left out because an answer was an error "
        "(an HTTP error, e.g. a prompt too long for the model)."
    )
    comparisons = results["comparisons"]
    tables = {c["model"]: per_task(c, tasks, answers, judgments) for c in comparisons}
    absolute = results.get("absolute", [])
    paths["markdown"].write_text(_markdown(intro, results, comparisons, tables, absolute))
    paths["html"].write_text(_html(intro, results, comparisons, tables, absolute, chart))
    return paths


def _markdown(intro, results, comparisons, tables, absolute) -> str:
    lines = ["# Evaluation report", "", intro, ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    lines += ["", "![win rates](win_rates.png)", "", "## Absolute scores (ELYZA-style)", ""]
    lines += ["| model | candidate | mean score (1-5) | ci95 | scored | invalid |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {a['model']} | {a['candidate']} | {_cell(a['mean'])} | {_cell(a['ci95'])} | {a['scored']} | "
        f"{a['invalid']} |"
        for a in absolute
    ]
    for c in comparisons:
        lines += ["", f"## {c['model']}: {c['x']} (X) vs {c['y']} (Y)", ""]
        lines += [f"- {sentence}" for sentence in diagnostics(c)]
        lines += [
            "",
            f"Per task (cells cut at {MD_CHARS} characters; report.html shows every answer whole). {LEGEND}",
            "",
        ]
        lines += ["| " + " | ".join(TASK_COLUMNS) + " |", "|" + "---|" * len(TASK_COLUMNS)]
        for row in tables[c["model"]]:
            cells = _task_cells(row)
            lines.append("| " + " | ".join([_md(cells[0]), _md(cells[1]), _md(cells[2]), *cells[3:]]) + " |")
    return "\n".join(lines) + "\n"


STYLE = """
body{font-family:system-ui,"Hiragino Sans","Noto Sans CJK JP",sans-serif;margin:2em auto;max-width:80em;
padding:0 1em;color:#222;line-height:1.5}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.35em .6em;vertical-align:top}
th{background:#f3f3f3;text-align:left}td.num{text-align:right}.wide{overflow-x:auto}
.tasks td.text{white-space:pre-wrap;max-width:28em;font-size:.92em}
.v-X{background:#e3f1e3}.v-Y{background:#f7e3e3}.v-tie{background:#f1f1f1}
"""


def _html(intro, results, comparisons, tables, absolute, chart: bytes) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in COLUMNS)
    summary = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows(results))
    scores = "".join(
        f"<tr><td>{e(a['model'])}</td><td>{e(a['candidate'])}</td><td class=num>{e(_cell(a['mean']))}</td>"
        f"<td>{e(_cell(a['ci95']))}</td><td class=num>{a['scored']}</td><td class=num>{a['invalid']}</td></tr>"
        for a in absolute
    )
    parts = [
        "<!doctype html><html lang='ja'><meta charset='utf-8'><title>atheus_ray evaluation</title>",
        f"<style>{STYLE}</style><h1>Evaluation report</h1><p>{e(intro)}</p>",
        f"<div class=wide><table><tr>{head}</tr>{summary}</table></div>",
        f"<p><img alt='win rates' src='data:image/png;base64,{base64.b64encode(chart).decode()}'></p>",
        "<h2>Absolute scores (ELYZA-style)</h2><table><tr><th>model</th><th>candidate</th><th>mean (1-5)</th>"
        f"<th>ci95</th><th>scored</th><th>invalid</th></tr>{scores}</table>",
    ]
    for c in comparisons:
        parts.append(f"<h2>{e(c['model'])}: {e(c['x'])} (X) vs {e(c['y'])} (Y)</h2><ul>")
        parts += [f"<li>{e(sentence)}</li>" for sentence in diagnostics(c)]
        parts.append(f"</ul><p>{e(LEGEND)}</p><table class=tasks><tr>")
        parts.append("".join(f"<th>{e(t)}</th>" for t in TASK_COLUMNS) + "</tr>")
        for row in tables[c["model"]]:
            cells = _task_cells(row)
            text = "".join(f"<td class=text>{e(v) if v is not None else '<i>(no answer)</i>'}</td>" for v in cells[:3])
            verdicts = "".join(f"<td class='v-{e(v)}'>{e(v)}</td>" for v in cells[3:5])
            numbers = "".join(f"<td class=num>{e(str(v))}</td>" for v in cells[5:])
            parts.append(f"<tr>{text}{verdicts}{numbers}</tr>")
        parts.append("</table>")
    return "".join(parts) + "</html>\n"


def _chart(results: dict) -> bytes:
    """The win-rate chart as PNG bytes."""
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
    png = figure_png(fig)
    plt.close(fig)
    return png
