"""The end-to-end pipeline as a job: seeds → data set → SFT of both conditions → Serve → evaluation report.

    python jobs/pipeline.py --config jobs/configs/pipeline.yaml [--out DIR] [--set key=value ...]
    ray job submit --working-dir . -- python jobs/pipeline.py --config jobs/configs/cluster/pipeline.yaml

Under `ray job submit` the job joins the cluster it was submitted to (RAY_ADDRESS); run by hand it starts a
local Ray cluster. It ends by printing where the data set card and the evaluation report are.
"""

import sys

from atheus_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
