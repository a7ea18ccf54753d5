"""Screening as a job: any table of pairs → tags, heuristics, decontamination, dedup, selection → data set + card.

    python jobs/screen.py --in outputs/local/responses --out outputs/screened --config jobs/configs/screen.yaml
    ray job submit --working-dir . -- python jobs/screen.py --in /mnt/shared/run/responses --out /mnt/shared/run2 --config ...

Under `ray job submit` the job joins the cluster it was submitted to (RAY_ADDRESS); run by hand it starts a
local Ray cluster.
"""

import sys

from atheus_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["screen", *sys.argv[1:]]))
