import pytest

from atheus_ray.evaluate.stats import absolute, sign_test, summarize, x_score


def j(task, order, verdict, len_x=100, len_y=100):
    return {"task_id": task, "order": order, "verdict": verdict, "len_x": len_x, "len_y": len_y}


JUDGMENTS = [
    j("t1", "XY", "A"),
    j("t1", "YX", "B"),  # X wins in both orders
    j("t2", "XY", "B"),
    j("t2", "YX", "C"),  # X loses, then a tie: inconsistent
    j("t3", "XY", "C", 300, 100),
    j("t3", "YX", "C", 300, 100),  # ties, X three times as long
    j("t4", "XY", "invalid"),
    j("t4", "YX", "A", 50, 100),  # unreadable, then Y (in slot A) wins
]


def test_counts_and_rates_match_hand_computed_values():
    s = summarize(JUDGMENTS, resamples=500)
    # readable scores for X: 1, 1, 0, 0.5, 0.5, 0.5, 0 -> 3.5 / 7
    assert (s["wins"], s["ties"], s["losses"], s["invalid"], s["errors"]) == (2, 3, 2, 1, 0)
    assert s["win_rate"] == 0.5
    # per task means: t1 1.0 (win), t2 0.25 (loss), t3 0.5 (tie), t4 0.0 (loss)
    assert (s["task_wins"], s["task_losses"], s["task_ties"]) == (1, 2, 1)
    assert s["sign_test_p"] == 1.0  # n = 3, k = 1: 2 * (1 + 3) / 8
    assert s["position_consistency"] == round(2 / 3, 4)  # t1 and t3 agree across orders, t2 does not
    assert s["first_slot_rate"] == 0.5  # decisive verdicts A, B, B, A
    assert s["by_length_ratio"] == {
        "<0.8": {"n": 1, "win_rate": 0.0},
        "0.8-1.25": {"n": 4, "win_rate": 0.625},
        ">1.25": {"n": 2, "win_rate": 0.5},
    }
    low, high = s["ci95"]
    assert 0 <= low <= s["win_rate"] <= high <= 1 and low < high


def test_x_score_maps_slots_back_to_candidates():
    assert (x_score("XY", "A"), x_score("XY", "B"), x_score("YX", "A"), x_score("YX", "B")) == (1, 0, 0, 1)
    assert x_score("YX", "C") == 0.5


@pytest.mark.parametrize("wins,losses,p", [(9, 1, 0.021484375), (5, 5, 1.0), (0, 0, 1.0), (10, 0, 2 / 1024)])
def test_sign_test_exact_values(wins, losses, p):
    assert sign_test(wins, losses) == pytest.approx(p)


def test_bootstrap_is_seeded_and_collapses_when_every_task_agrees():
    all_wins = [j(f"t{i}", order, "A" if order == "XY" else "B") for i in range(10) for order in ("XY", "YX")]
    s = summarize(all_wins)
    assert s["win_rate"] == 1.0 and s["ci95"] == [1.0, 1.0] and s["sign_test_p"] == pytest.approx(2 / 1024)
    assert summarize(JUDGMENTS, seed=3) == summarize(JUDGMENTS, seed=3)


def test_the_report_numbers_equal_results_json(tmp_path):
    import json
    import re

    from atheus_ray.evaluate.report import COLUMNS, write_report

    results = {
        "judge_model": "judge",
        "tasks": 4,
        "comparisons": [
            {"model": "m-135M", "x": "atheus", "y": "open", **summarize(JUDGMENTS)},
            {"model": "m-1.8b", "x": "atheus", "y": "open", **summarize(JUDGMENTS, seed=1)},
        ],
    }
    tasks = [{"id": t, "input": f"問題 {t}"} for t in ("t1", "t2", "t3", "t4")]
    answers = {(m, c, t["id"]): f"{c} の答え" for m in ("m-135M", "m-1.8b") for c in ("atheus", "open") for t in tasks}
    judgments = [{**j, "group": m} for m in ("m-135M", "m-1.8b") for j in JUDGMENTS]
    paths = write_report(tmp_path, results, tasks, answers, judgments)
    assert json.loads(paths["results"].read_text(encoding="utf-8")) == results
    lines = [row for row in paths["markdown"].read_text(encoding="utf-8").splitlines() if row.startswith("| m-")]
    for line, comparison in zip(lines, results["comparisons"]):
        cells = dict(zip(COLUMNS, [c.strip() for c in line.strip("|").split("|")]))
        assert int(cells["wins"]) == comparison["wins"] and int(cells["losses"]) == comparison["losses"]
        assert float(cells["win_rate"]) == comparison["win_rate"]
        low, high = map(float, re.findall(r"[\d.]+", cells["ci95"]))
        assert (low, high) == pytest.approx(tuple(comparison["ci95"]), abs=5e-4)
    assert paths["chart"].read_bytes()[:4] == b"\x89PNG" and "<table" in paths["html"].read_text(encoding="utf-8")


def test_absolute_scores_mean_ci_and_counts():
    judgments = [{"verdict": v} for v in ["5", "4", "4", "3", "invalid", "error", "2"]]
    a = absolute(judgments, resamples=500)
    assert (a["scored"], a["invalid"], a["errors"], a["mean"]) == (5, 1, 1, 3.6)  # (5+4+4+3+2)/5
    assert a["counts"] == {"1": 0, "2": 1, "3": 1, "4": 2, "5": 1}
    assert 2 <= a["ci95"][0] <= 3.6 <= a["ci95"][1] <= 5
    assert absolute([{"verdict": "invalid"}])["mean"] is None


def test_the_report_has_a_row_per_task_with_both_verdicts_and_explains_the_diagnostics(tmp_path):
    from atheus_ray.evaluate.report import diagnostics, per_task, write_report

    comparison = {"model": "m", "x": "atheus", "y": "open", **summarize(JUDGMENTS)}
    tasks = [{"id": t, "input": f"問題 {t}\n二行目"} for t in ("t1", "t2", "t3", "t4")]
    answers = {("m", c, t["id"]): f"<b>{c}</b> | {t['id']}" for c in ("atheus", "open") for t in tasks}
    answers["m", "open", "t4"] = None  # an answer that was an error
    scores = [
        {"task_id": "t1", "order": "score", "verdict": v, "group": "m", "candidate": c}
        for c, v in (("atheus", "4"), ("open", "2"))
    ]
    judgments = [{**j, "group": "m"} for j in JUDGMENTS] + scores
    table = per_task(comparison, tasks, answers, judgments)
    # X wins both orders of t1; t2: Y, then a tie; t3: ties; t4: unreadable, then Y (in slot A)
    assert [(r["x_first"], r["y_first"], r["x_score"]) for r in table] == [
        ("X", "X", 1.0),
        ("Y", "tie", 0.25),
        ("tie", "tie", 0.5),
        ("invalid", "Y", 0.0),
    ]
    assert (table[0]["x_points"], table[0]["y_points"], table[1]["x_points"]) == ("4", "2", None)
    said = " ".join(diagnostics(comparison))
    assert "Position consistency 0.67" in said and "First-slot rate 0.50" in said and "no lean" in said
    assert "0.00 when X's answer is shorter than 0.8x Y's (n 1)" in said
    results = {"judge_model": "judge", "tasks": 4, "comparisons": [comparison], "absolute": []}
    paths = write_report(tmp_path, results, tasks, answers, judgments)
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    task_rows = [line for line in markdown.splitlines() if line.startswith("| 問題")]
    assert len(task_rows) == 4 and all(len(r.split(" | ")) == 8 for r in task_rows)  # pipes in answers escaped
    assert "問題 t1<br>二行目" in markdown and "*(no answer)*" in task_rows[3]
    assert "<b>atheus</b>" not in page and "&lt;b&gt;atheus&lt;/b&gt;" in page  # the answers are escaped
    assert "src='data:image/png;base64," in page and "http" not in page  # self-contained: no network
    assert page.count("<tr>") == 2 + 1 + 1 + 4  # summary head and row, absolute scores head, per-task head, 4 tasks
