"""Statistics of pairwise judgments of candidate X against candidate Y.

Input: judgment records with `task_id`, `order` ("XY": X's answer was A; "YX": X's answer was B),
`verdict` (A | B | C | invalid | error), and `len_x`, `len_y` (answer lengths in characters).
- X's score per readable judgment: win 1, tie 0.5, loss 0; the win rate is their mean.
- Confidence interval: a cluster bootstrap over tasks (both orders of a task are resampled together, as
  they are not independent), percentiles of `resamples` win rates.
- Sign test: per task, X wins when its mean score is above 0.5, loses below, ties at 0.5; an exact two-sided
  binomial test of wins against losses (ties left out).
- Position consistency: among tasks judged readably in both orders, the share whose two verdicts agree
  once mapped back to X and Y; first-slot rate: the share of decisive verdicts that picked answer A.
- By length ratio len_x / len_y: win rate in three buckets (< 0.8, 0.8-1.25, > 1.25), a check on length bias.
`absolute` summarizes the second view, ELYZA-style 1-5 scores of one candidate (one judgment per task, so the
bootstrap over judgments is a bootstrap over tasks).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

READABLE = ("A", "B", "C")


def x_score(order: str, verdict: str) -> float:
    """X's score for one readable judgment."""
    if verdict == "C":
        return 0.5
    x_slot = "A" if order == "XY" else "B"
    return 1.0 if verdict == x_slot else 0.0


def _ci95(resampled: list[float]) -> list[float] | None:
    """The 2.5th and 97.5th percentiles of sorted bootstrap statistics (None when there are none)."""
    if not resampled:
        return None
    last = len(resampled) - 1
    return [round(resampled[int(0.025 * last)], 4), round(resampled[int(0.975 * last)], 4)]


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial p-value of `wins` against `losses` under p = 0.5."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def summarize(judgments: list[dict], resamples: int = 2000, seed: int = 0) -> dict:
    """Wins/ties/losses, win rate with its cluster-bootstrap 95% CI, sign test, position and length checks."""
    readable = [j for j in judgments if j["verdict"] in READABLE]
    by_task: dict[str, list[dict]] = defaultdict(list)
    for j in readable:
        by_task[j["task_id"]].append(j)
    scores = [x_score(j["order"], j["verdict"]) for j in readable]
    wins, ties = scores.count(1.0), scores.count(0.5)

    tasks = sorted(by_task)
    per_task = {t: [x_score(j["order"], j["verdict"]) for j in by_task[t]] for t in tasks}
    rng = random.Random(seed)
    rates = []
    for _ in range(resamples if tasks else 0):
        sample = [s for t in rng.choices(tasks, k=len(tasks)) for s in per_task[t]]
        rates.append(sum(sample) / len(sample))
    rates.sort()
    means = [sum(s) / len(s) for s in per_task.values()]
    task_wins, task_losses = sum(m > 0.5 for m in means), sum(m < 0.5 for m in means)

    both = [by_task[t] for t in tasks if {j["order"] for j in by_task[t]} == {"XY", "YX"}]
    consistent = sum(len({x_score(j["order"], j["verdict"]) for j in js}) == 1 for js in both)
    decisive = [j for j in readable if j["verdict"] in ("A", "B")]

    buckets = {"<0.8": [], "0.8-1.25": [], ">1.25": []}
    for j, s in zip(readable, scores):
        ratio = j["len_x"] / max(j["len_y"], 1)
        buckets["<0.8" if ratio < 0.8 else ">1.25" if ratio > 1.25 else "0.8-1.25"].append(s)

    return {
        "judgments": len(judgments),
        "wins": wins,
        "ties": ties,
        "losses": len(scores) - wins - ties,
        "invalid": sum(j["verdict"] == "invalid" for j in judgments),
        "errors": sum(j["verdict"] == "error" for j in judgments),
        "win_rate": round(sum(scores) / len(scores), 4) if scores else None,
        "ci95": _ci95(rates),
        "tasks": len(tasks),
        "task_wins": task_wins,
        "task_losses": task_losses,
        "task_ties": len(tasks) - task_wins - task_losses,
        "sign_test_p": sign_test(task_wins, task_losses),
        "position_consistency": round(consistent / len(both), 4) if both else None,
        "first_slot_rate": round(sum(j["verdict"] == "A" for j in decisive) / len(decisive), 4) if decisive else None,
        "by_length_ratio": {
            k: {"n": len(v), "win_rate": round(sum(v) / len(v), 4) if v else None} for k, v in buckets.items()
        },
    }


def absolute(judgments: list[dict], resamples: int = 2000, seed: int = 0) -> dict:
    """ELYZA-style 1-5 scores of one candidate: mean, 95% bootstrap CI over tasks, counts per score."""
    scores = [int(j["verdict"]) for j in judgments if j["verdict"] in ("1", "2", "3", "4", "5")]
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(scores, k=len(scores))) / len(scores) for _ in range(resamples if scores else 0))
    return {
        "judgments": len(judgments),
        "scored": len(scores),
        "invalid": sum(j["verdict"] == "invalid" for j in judgments),
        "errors": sum(j["verdict"] == "error" for j in judgments),
        "mean": round(sum(scores) / len(scores), 4) if scores else None,
        "ci95": _ci95(means),
        "counts": {str(k): scores.count(k) for k in range(1, 6)},
    }
