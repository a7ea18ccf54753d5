"""Near-duplicate removal at scale, against exact ROUGE-L over all pairs.

    .venv/bin/python benchmarks/dedup.py [--rows 100000 1000000] [--sample 2000 1000] [--novelty 90000 5000]
                                         [--naive-rows 13000] [--ray-nodes 2]

For each size (each in its own process, so that its peak memory is its own):
1. n synthetic Japanese requests (below): wall time and peak RSS of atheus_ray.screen.dedup.mark_duplicates,
   the whole stage (near-duplicate pairs, then the best-first pass).
   The same pairs found by Ray Data tasks on a local Ray cluster of `--ray-nodes` worker nodes (default 2, the
   cores shared out, a head that runs no task; atheus_ray.neardup_ray), timed: Ray's cost.
2. Recall and precision of its pairs against the truth: `sample` rows drawn at random, each compared with all
   n rows by rapidfuzz `cdist` (character ROUGE-L > 0.7); a pair counts as found when the stage's pairs hold it
   or its two texts are identical. Precision: the stage's pairs that touch a sampled row and are in the truth.
   The true neighbours per sampled row are printed too: the generator keeps that density flat as n grows.
3. Once: Self-Instruct's novelty check of a round, 5,000 new requests against about 90,000 kept ones, on the
   index kept from the round before (atheus_ray.neardup.NoveltyIndex) and on a fresh one (same decisions).
4. Once: the naive way, Self-Instruct's filter (ROUGE-L of every pair, one pair at a time in Python), on
   `naive-rows` rows, timed on a sample of pairs and extrapolated, next to the measured all-pairs `cdist`.
Prints one JSON object as the last line of stdout.

The generator: requests built from eight task templates, short openers and forms, and noun phrases drawn from
a vocabulary of made-up words (kanji and katakana) that grows with n (n / 5 words), so that unrelated rows
stay unrelated at any size; 30% carry an input text of 1-4 sentences of such phrases. 10% of the rows are
near-copies of an earlier row with 1-3 edits of the kinds a generator makes: 下さい for ください, an opener or
closing added, a noun phrase swapped, a form changed, a character dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

KANJI = (
    "日本語学校会社社会文化経済政治技術情報環境健康医療教育地域生活家庭料理旅行歴史科学研究開発計画管理"
    "製品販売市場価格安全災害防止交通電車道路建物住宅土地農業漁業工場産業資源電力水道通信放送新聞雑誌"
    "音楽美術映画写真運動選手試合大会季節天気気温自然植物動物森林海洋山川公園図書館病院薬局保険年金税金"
    "法律契約手続申請書類予算費用収入支出貯金投資株式銀行資料会議報告説明相談問題解決方法手順注意準備"
)
KATAKANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワンガギグゲゴザジズゼゾダデドバビブベボパピプペポー"
OPENERS = ["", "", "", "", "すみません、", "質問です。", "相談です。"]
TASKS = [
    "{a}の{b}について、{c}の観点から{n}つ{form}{verb}ください",
    "{a}で{b}をするときの{c}を{form}{verb}もらえますか",
    "{a}と{b}の違いを{c}の視点で{verb}ください",
    "{a}に関する{b}の{c}を{n}個{form}挙げてください",
    "{a}の担当です。{b}の{c}を改善する案を{form}{verb}ください",
    "「{a}」という{b}の{c}を考えて、{form}書いてください",
    "{a}を使って{b}を{c}する手順を{form}{verb}ください",
    "{a}の{b}が{c}になった理由を{form}{verb}ください",
]
VERBS = ["説明して", "教えて", "まとめて", "整理して", "提案して", "示して"]
FORMS = ["", "", "箇条書きで", "表にして", "二百字以内で", "理由を添えて", "具体例を交えて", "簡潔に"]
NUMBERS = ["二", "三", "四", "五", "六"]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words = set()
    while len(words) < size:
        if rng.random() < 0.7:
            words.add("".join(rng.choice(KANJI) for _ in range(rng.choice([2, 3, 3, 4, 5]))))
        else:
            words.add("".join(rng.choice(KATAKANA) for _ in range(rng.randint(4, 7))))
    return sorted(words)


PARTICLES = ["の", "と", "や", "による", "における", "に向けた"]
ENDINGS = [
    "である。",
    "が増えている。",
    "が課題だ。",
    "を進めている。",
    "が話題になった。",
    "に関心が集まる。",
    "は見直された。",
]


def phrase(rng: random.Random, words: list[str], k: int) -> str:
    out = rng.choice(words)
    for _ in range(k - 1):
        out += rng.choice(PARTICLES) + rng.choice(words)
    return out


def sentence(rng: random.Random, words: list[str]) -> str:
    subject = phrase(rng, words, rng.randint(2, 4)) + rng.choice(["は", "が", "を", "で"])
    return subject + phrase(rng, words, rng.randint(1, 3)) + rng.choice(ENDINGS)


def fresh(rng: random.Random, words: list[str]) -> tuple[str, str | None, list[str]]:
    """A new request, its input (or None) and its three noun phrases."""
    slots = dict(
        a=phrase(rng, words, rng.randint(2, 4)),
        b=phrase(rng, words, rng.randint(2, 3)),
        c=phrase(rng, words, rng.randint(2, 3)),
        n=rng.choice(NUMBERS),
        form=rng.choice(FORMS),
        verb=rng.choice(VERBS),
    )
    text = rng.choice(OPENERS) + rng.choice(TASKS).format(**slots)
    inp = None
    if rng.random() < 0.3:
        inp = "".join(sentence(rng, words) for _ in range(rng.randint(1, 4)))
    return text, inp, [slots["a"], slots["b"], slots["c"]]


def edit(text: str, rng: random.Random, words: list[str], fillers: list[str]) -> str:
    """`text` with one edit; `fillers` (its noun phrases) follows a swapped phrase."""
    kind = rng.randrange(6)
    if kind == 0:
        return text.replace("ください", "下さい") if "ください" in text else text + "。"
    if kind == 1:
        return rng.choice(["あの、", "できれば、", "急ぎで、", "念のため、"]) + text
    if kind == 2:
        return text + rng.choice(["。よろしくお願いします", "。", "？", "。なるべく丁寧に"])
    if kind == 3:  # a noun phrase swapped for a word of the vocabulary
        k, new = rng.randrange(len(fillers)), rng.choice(words)
        text, fillers[k] = text.replace(fillers[k], new, 1), new
        return text
    if kind == 4:
        for f in FORMS[2:]:
            if f in text:
                return text.replace(f, rng.choice(FORMS), 1)
        return text.replace("ください", "くれますか", 1)
    i = rng.randrange(len(text))
    return text[:i] + text[i + 1 :]


def make_rows(n: int, rng: random.Random) -> list[dict]:
    words = vocabulary(max(2000, n // 5), rng)
    rows, fill = [], []
    for i in range(n):
        if rows and rng.random() < 0.1:
            k = rng.randrange(len(rows))
            text, inp, fillers = rows[k]["instruction"], rows[k]["input"], list(fill[k])
            for _ in range(rng.randint(1, 3)):
                text = edit(text, rng, words, fillers)
        else:
            text, inp, fillers = fresh(rng, words)
        fill.append(fillers)
        rows.append({"id": f"r{i:07d}", "instruction": text, "input": inp, "score": rng.randint(1, 10)})
    return rows


def one_size(n: int, sample_size: int, nodes: int) -> dict:
    """Steps 1 and 2 for n rows (see the module docstring)."""
    import numpy as np
    from rapidfuzz import process
    from rapidfuzz.distance import Indel

    from atheus_ray.neardup import near_pairs
    from atheus_ray.rows import task_text
    from atheus_ray.screen.dedup import mark_duplicates

    rng = random.Random(0)
    t0 = time.perf_counter()
    rows = make_rows(n, rng)
    make_s = time.perf_counter() - t0
    mark_duplicates(rows[:2000])  # numba compiles (or loads its cache) outside the timing

    t0 = time.perf_counter()
    marked = mark_duplicates(rows)
    dedup_s = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the generator's rows and the stage's
    removed = sum(r["dup_of"] is not None for r in marked)

    texts = [task_text(r["instruction"], r["input"]) for r in rows]
    t0 = time.perf_counter()
    group, pairs, _ = near_pairs(texts, 0.7)
    pairs_s = time.perf_counter() - t0
    found = {(int(i), int(j)) for i, j in pairs}

    ray_s = ray_same = None
    if nodes:  # the same search as Ray Data tasks on a local cluster of `nodes` worker nodes: what does Ray cost?
        import ray
        from ray.cluster_utils import Cluster

        from atheus_ray.neardup_ray import near_pairs_on_ray

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head runs no task
        for _ in range(nodes):  # the machine's cores shared out: the nodes' tasks reach each other by the network
            cluster.add_node(num_cpus=max(1, os.cpu_count() // nodes), object_store_memory=2 * 1024**3)
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        t0 = time.perf_counter()
        on_ray_result = near_pairs_on_ray(texts, 0.7, blocks=2 * os.cpu_count())
        ray_s = time.perf_counter() - t0
        ray.shutdown()
        cluster.shutdown()
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        ray_same = bool(np.array_equal(pairs[order], on_ray_result[1]) and np.array_equal(group, on_ray_result[0]))

    sample = sorted(random.Random(1).sample(range(n), sample_size))
    t0 = time.perf_counter()
    scores = process.cdist(
        [texts[i] for i in sample],
        texts,
        scorer=Indel.normalized_similarity,
        score_cutoff=0.7,
        workers=-1,
        dtype="float32",
    )
    truth_s = time.perf_counter() - t0
    x, y = np.nonzero(scores > 0.7)
    truth = {(min(sample[a], b), max(sample[a], b)) for a, b in zip(x.tolist(), y.tolist()) if sample[a] != b}

    def is_found(i: int, j: int) -> bool:
        gi, gj = int(group[i]), int(group[j])
        return gi == gj or (min(gi, gj), max(gi, gj)) in found

    hits = sum(is_found(i, j) for i, j in truth)
    members: dict[int, list[int]] = {}  # group -> its rows, to expand the stage's pairs to rows
    for i, g in enumerate(group.tolist()):
        members.setdefault(g, []).append(i)
    in_sample = set(sample)
    claimed = {
        (min(a, b), max(a, b))
        for gi, gj in found
        for a in members[gi]
        for b in members[gj]
        if a in in_sample or b in in_sample
    }
    claimed |= {
        (min(a, b), max(a, b))
        for g in members.values()
        if len(g) > 1
        for a in g
        for b in g
        if a != b and (a in in_sample or b in in_sample)
    }
    return {
        "rows": n,
        "make_rows_s": round(make_s, 1),
        "wall_s": round(dedup_s, 2),
        "removed": removed,
        "peak_rss_mb": round(rss_mb),
        "pairs_s": round(pairs_s, 2),
        "pairs": len(pairs),
        "on_ray": bool(nodes)
        and {
            "worker_nodes": nodes,
            "blocks": 2 * os.cpu_count(),
            "pairs_s": round(ray_s, 2),
            "same_pairs": ray_same,
            "overhead_x": round(ray_s / pairs_s, 2),
        },
        "truth": {
            "sampled_rows": sample_size,
            "true_pairs": len(truth),
            "true_neighbours_per_row": round(len(truth) / sample_size, 3),
            "cdist_s": round(truth_s, 1),
        },
        "recall": round(hits / len(truth), 4) if truth else None,
        "precision": round(len(claimed & truth) / len(claimed), 4) if claimed else None,
    }


def novelty(n_kept: int, n_new: int) -> dict:
    """Step 3: Self-Instruct's novelty check of one round, `n_new` candidates against about `n_kept` kept rows
    (the last `n_new` of them checked as the round before), on the index the run keeps from round to round
    and on a fresh one."""
    from atheus_ray.neardup import NoveltyIndex, first_matches
    from atheus_ray.rows import task_text

    rows = make_rows(n_kept + n_new, random.Random(0))
    texts = {r["id"]: task_text(r["instruction"], r["input"]) for r in rows}
    keys = list(texts)
    kept, earlier, new = (  # the round before is the last n_new of the kept rows
        {k: texts[k] for k in part} for part in (keys[: n_kept - n_new], keys[n_kept - n_new : n_kept], keys[n_kept:])
    )
    first_matches({k: texts[k] for k in keys[:1000]}, {k: texts[k] for k in keys[1000:1100]}, 0.7)  # compiles
    index = NoveltyIndex(0.7)
    index.add(kept)
    first = index.check(earlier)  # the round before: signs the kept rows
    resigned = index.resigned
    t0 = time.perf_counter()
    found = index.check(new)
    kept_s = time.perf_counter() - t0
    kept |= {k: earlier[k] for k in earlier if first[k] is None}
    t0 = time.perf_counter()
    fresh = first_matches(kept, new, 0.7)
    fresh_s = time.perf_counter() - t0
    return {
        "kept": len(kept),
        "new": n_new,
        "kept_index_s": round(kept_s, 2),
        "fresh_index_s": round(fresh_s, 2),
        "resigned_in_round": index.resigned - resigned,
        "same_decisions": found == fresh,
        "not_novel": sum(m is not None for m in found.values()),
    }


def naive(n: int, n_pairs: int) -> dict:
    """Step 4: Self-Instruct's per-pair filter in Python, timed and extrapolated, and rapidfuzz's all pairs."""
    from rapidfuzz import process
    from rapidfuzz.distance import Indel

    from atheus_ray.rows import task_text

    rng = random.Random(0)
    texts = [task_text(r["instruction"], r["input"]) for r in make_rows(n, rng)]
    pairs = [(rng.randrange(n), rng.randrange(n)) for _ in range(n_pairs)]
    t0 = time.perf_counter()
    for i, j in pairs:
        _python_rouge_l(texts[i], texts[j])
    per_pair = (time.perf_counter() - t0) / n_pairs
    t0 = time.perf_counter()
    process.cdist(texts, texts, scorer=Indel.normalized_similarity, score_cutoff=0.7, workers=-1, dtype="float32")
    all_pairs = n * (n - 1) // 2
    return {
        "rows": n,
        "pairs": all_pairs,
        "python_rouge_l_us_per_pair": round(per_pair * 1e6, 1),
        "python_rouge_l_extrapolated_h": round(per_pair * all_pairs / 3600, 2),
        "rapidfuzz_cdist_measured_s": round(time.perf_counter() - t0, 1),
    }


def _python_rouge_l(a: str, b: str) -> float:
    """Character ROUGE-L F-measure with a pure-Python LCS, as a per-pair filter computes it."""
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for k, cb in enumerate(b):
            cur.append(prev[k] + 1 if ca == cb else max(prev[k + 1], cur[k]))
        prev = cur
    lcs = prev[-1]
    return 0.0 if not lcs else 2 * lcs / (len(a) + len(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--sample", type=int, nargs="+", default=[2000, 1000], help="sampled rows per size")
    parser.add_argument("--novelty", type=int, nargs=2, default=[90_000, 5_000], help="kept rows, new rows")
    parser.add_argument("--naive-rows", type=int, default=13_000)
    parser.add_argument("--naive-pairs", type=int, default=20_000, help="pairs timed for the naive filter")
    parser.add_argument(
        "--ray-nodes", type=int, default=2, help="worker nodes of the local cluster for the Ray Data version (0: skip)"
    )
    parser.add_argument("--one", type=int, nargs=3, help=argparse.SUPPRESS)  # n, sample, nodes: one size, here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(*args.one)))
        return
    samples = args.sample + args.sample[-1:] * (len(args.rows) - len(args.sample))
    sizes = []
    for n, sample in zip(args.rows, samples):
        one = [sys.executable, __file__, "--one", str(n), str(sample), str(args.ray_nodes)]
        out = subprocess.run(one, capture_output=True, text=True, check=True).stdout
        sizes.append(json.loads(out.splitlines()[-1]))
        print(json.dumps(sizes[-1]), file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "dedup",
                "machine": {"cpus": os.cpu_count()},
                "threshold": 0.7,
                "sizes": sizes,
                "novelty": novelty(*args.novelty),
                "naive_all_pairs": naive(args.naive_rows, args.naive_pairs),
            }
        )
    )


if __name__ == "__main__":
    main()
