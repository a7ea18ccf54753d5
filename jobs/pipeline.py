"""The end-to-end pipeline as a job (as far as it exists: synthesis).

    python jobs/pipeline.py --config jobs/configs/synth.yaml [--set key=value ...]
    ray job submit --working-dir . -- python jobs/pipeline.py --config jobs/configs/synth.yaml

Under `ray job submit` the job joins the cluster it was submitted to (RAY_ADDRESS); run by hand it starts a
local Ray cluster.
"""

import sys

from atheus_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
