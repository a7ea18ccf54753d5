"""Evaluation as a job: candidates answer ELYZA-style tasks, a judge compares them pairwise, a report.

    python jobs/evaluate.py --config jobs/configs/eval.yaml [--out DIR] [--set key=value ...]
    ray job submit --working-dir . --runtime-env-json '{"env_vars": {"OPENAI_API_KEY": "..."}}' \
        -- python jobs/evaluate.py --config jobs/configs/eval.yaml --set tasks=[hf:elyza/ELYZA-tasks-100:test]

Under `ray job submit` the job joins the cluster it was submitted to (RAY_ADDRESS); run by hand it starts a
local Ray cluster. Judgments are cached in OUT/judge_cache.jsonl: a rerun makes no repeat judge calls.
"""

import sys

from atheus_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
