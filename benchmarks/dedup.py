"""Near-duplicate removal at scale vs exact all-pairs ROUGE-L.

    .venv/bin/python benchmarks/dedup.py [--rows 100000] [--sample 5000] [--naive-rows 13000]

1. 100,000 synthetic Japanese instructions (five templates over Japanese vocabulary plus a made-up keyword;
   10% of them are near-copies of another row with one or two small edits): wall time and peak memory of atheus_ray.screen.dedup.mark_duplicates.
2. Recall and precision of the LSH index's pairs against the exact set of pairs with character ROUGE-L > 0.7,
   on a 5,000-row sample (exact pairs from rapidfuzz's all-pairs `cdist`).
3. The naive way, Self-Instruct's filter (ROUGE-L of every pair, one pair at a time in Python), on 13,000 rows:
   timed on a sample of pairs and extrapolated to all pairs (running it whole takes hours), next to the
   measured all-pairs time of rapidfuzz `cdist` in C++.
Prints one JSON object as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import time

TOPICS = ["確定申告", "住民票の写し", "梅雨の洗濯", "新入社員研修", "防災用品", "介護保険", "ふるさと納税", "中古車選び",
          "家庭菜園", "英語学習", "睡眠の質", "テレワーク", "節電", "子どもの読書", "転職活動", "健康診断", "引っ越し",
          "年賀状", "京都観光", "和食の献立", "プログラミング入門", "省エネ家電", "自転車保険", "図書館の使い方",
          "町内会の行事", "熱中症対策", "家計簿", "お弁当作り", "敬語の使い方", "災害時の連絡方法"]  # fmt: skip
ASPECTS = ["注意点", "メリット", "手順", "よくある失敗", "費用の目安", "準備するもの", "初心者向けのコツ", "歴史的な背景",
           "向いている人", "比較のポイント", "最新の動向", "法律上の決まり", "子ども向けの説明", "高齢者への配慮"]  # fmt: skip
VERBS = ["挙げて", "説明して", "まとめて", "教えて", "整理して", "書き出して"]
FORMS = ["", "箇条書きで", "表にして", "二百字以内で", "理由を添えて", "具体例を交えて", "中学生にも分かるように"]
NUMBERS = ["二", "三", "四", "五"]
PEOPLE = ["会社員", "大学生", "主婦", "高校の先生", "看護師", "農家", "エンジニア", "店長", "年金生活者", "新米の親"]
PLACES = ["札幌", "仙台", "金沢", "名古屋", "大阪", "広島", "高知", "福岡", "那覇", "長野", "横浜", "松江"]
KANA = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわ"
TEMPLATES = [
    "{topic}について、{aspect}を{n}つ{form}{verb}ください",
    "{place}に住む{person}です。{topic}で困っています。{aspect}を{form}{verb}もらえますか",
    "{person}向けに、{topic}の{aspect}を{form}{verb}ほしい",
    "「{topic}」をテーマに、{aspect}が分かる文章を{form}書いてください",
    "{topic}と{topic2}を比べて、{aspect}の違いを{form}{verb}ください",
]


def make_rows(n: int, rng: random.Random) -> list[dict]:
    rows, texts = [], []
    for i in range(n):
        if texts and rng.random() < 0.1:  # a planted near-duplicate of an earlier row
            text = texts[rng.randrange(len(texts))]
            for _ in range(rng.randint(1, 2)):
                text = rng.choice([lambda t: t.replace("ください", "下さい"), lambda t: t + "。",
                                   lambda t: t.replace("つ", "個"), lambda t: "あの、" + t])(text)  # fmt: skip
        else:
            text = rng.choice(TEMPLATES).format(
                topic=rng.choice(TOPICS), topic2=rng.choice(TOPICS), aspect=rng.choice(ASPECTS),
                n=rng.choice(NUMBERS), form=rng.choice(FORMS), verb=rng.choice(VERBS), place=rng.choice(PLACES),
                person=rng.choice(PEOPLE),
            )  # fmt: skip
            # a made-up keyword, as real requests name their own things: distinct rows stay distinct
            text += "。「" + "".join(rng.choice(KANA) for _ in range(rng.randint(20, 30))) + "」"
        texts.append(text)
        rows.append({"id": f"r{i:06d}", "instruction": text, "input": None, "score": rng.randint(1, 10)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=5_000)
    parser.add_argument("--naive-rows", type=int, default=13_000)
    parser.add_argument("--naive-pairs", type=int, default=20_000, help="pairs timed for the naive filter")
    args = parser.parse_args()

    from rapidfuzz import process
    from rapidfuzz.distance import Indel

    from atheus_ray.screen.dedup import mark_duplicates
    from atheus_ray.text import NearDupIndex, rouge_l

    rng = random.Random(0)
    rows = make_rows(args.rows, rng)

    # 1. the dedup stage at full size
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    marked = mark_duplicates(rows)
    dedup_s = time.perf_counter() - t0
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    removed = sum(r["dup_of"] is not None for r in marked)

    # 2. recall / precision of the index's pairs on a sample, against exact all-pairs
    sample = [r["instruction"] for r in rng.sample(rows, args.sample)]
    t0 = time.perf_counter()
    scores = process.cdist(sample, sample, scorer=Indel.normalized_similarity, score_cutoff=0.7, workers=-1)
    exact_s = time.perf_counter() - t0
    truth = {(i, j) for i in range(len(sample)) for j in range(i + 1, len(sample)) if scores[i, j] > 0.7}
    index = NearDupIndex(threshold=0.7)
    for i, text in enumerate(sample):
        index.add(str(i), text)
    found = set()
    for i, text in enumerate(sample):
        for key in index.lsh.query(index._minhash(text)):
            j = int(key)
            if j != i and rouge_l(text, sample[j]) > 0.7:
                found.add((min(i, j), max(i, j)))
    hits = len(found & truth)

    # 3. the naive filter: ROUGE-L pair by pair in Python (Self-Instruct's way), timed and extrapolated
    naive = [r["instruction"] for r in rows[: args.naive_rows]]
    pairs = [(rng.randrange(len(naive)), rng.randrange(len(naive))) for _ in range(args.naive_pairs)]
    t0 = time.perf_counter()
    for i, j in pairs:
        _python_rouge_l(naive[i], naive[j])
    per_pair = (time.perf_counter() - t0) / len(pairs)
    all_pairs = len(naive) * (len(naive) - 1) // 2
    t0 = time.perf_counter()
    process.cdist(naive, naive, scorer=Indel.normalized_similarity, score_cutoff=0.7, workers=-1, dtype="uint8")
    cdist_s = time.perf_counter() - t0

    print(json.dumps({
        "benchmark": "dedup",
        "machine": {"cpus": os.cpu_count()},
        "dedup": {"rows": len(rows), "removed": removed, "kept": len(rows) - removed, "wall_s": round(dedup_s, 2),
                  "peak_rss_mb": round(rss_peak / 1024, 1), "rss_growth_mb": round((rss_peak - rss_before) / 1024, 1)},
        "quality_on_sample": {"rows": len(sample), "exact_pairs": len(truth), "index_pairs": len(found),
                              "recall": round(hits / len(truth), 4) if truth else None,
                              "precision": round(hits / len(found), 4) if found else None,
                              "exact_all_pairs_cdist_s": round(exact_s, 2)},
        "naive_all_pairs": {"rows": len(naive), "pairs": all_pairs,
                            "python_rouge_l_us_per_pair": round(per_pair * 1e6, 1),
                            "python_rouge_l_extrapolated_h": round(per_pair * all_pairs / 3600, 2),
                            "rapidfuzz_cdist_measured_s": round(cdist_s, 2)},
    }))  # fmt: skip


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


if __name__ == "__main__":
    main()
