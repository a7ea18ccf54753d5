"""The Ray Data near-duplicate search against the single-process one, on a cluster of two worker nodes."""

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import numpy as np, ray
from ray.util.state import list_tasks
from atheus_ray.neardup import near_pairs
from atheus_ray.neardup_ray import near_pairs_on_ray
from atheus_ray.screen.dedup import mark_duplicates

rows = json.load(open(sys.argv[1]))
texts = [r["instruction"] for r in rows]
ray.init()
expected, got = near_pairs(texts, 0.7), near_pairs_on_ray(texts, 0.7, blocks=4)
order = np.lexsort((expected[1][:, 1], expected[1][:, 0]))
nodes = {t.node_id for t in list_tasks(filters=[("state", "=", "FINISHED")], limit=10000) if "MapBatches" in t.name}
print(json.dumps({
    "pairs": len(expected[1]),
    "same_groups": bool(np.array_equal(expected[0], got[0])),
    "same_pairs": bool(np.array_equal(expected[1][order], got[1])),
    "same_scores": bool(np.array_equal(expected[2][order], got[2])),
    "same_dup_of": [r["dup_of"] for r in mark_duplicates(rows)]
                   == [r["dup_of"] for r in mark_duplicates(rows, on_ray_blocks=4)],
    "nodes": len(nodes),
}))
"""


def test_finds_the_single_process_pairs_on_two_nodes(ray_two_nodes, near_copies, tmp_path):
    texts = near_copies(3000, seed=4) + ["同じ依頼です"] * 3  # identical texts too
    rows = [{"id": f"r{k:04d}", "instruction": t, "input": None, "score": k % 5} for k, t in enumerate(texts)]
    (tmp_path / "rows.json").write_text(json.dumps(rows, ensure_ascii=False))
    env = ray_two_nodes["env"] | {"RAY_ADDRESS": ray_two_nodes["address"]}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "rows.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["pairs"] > 300
    assert result["same_groups"] and result["same_pairs"] and result["same_scores"] and result["same_dup_of"]
    assert result["nodes"] == 2  # the map tasks ran on both worker nodes
