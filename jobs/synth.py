"""Synthesis as a job: seeds → Self-Instruct → Evol-Instruct → responses → screening, as Parquet (resumable).

    python jobs/synth.py --config jobs/configs/synth.yaml [--out DIR] [--set key=value ...]
    ray job submit --working-dir . -- python jobs/synth.py --config jobs/configs/synth.yaml

Under `ray job submit` the job joins the cluster it was submitted to (RAY_ADDRESS); run by hand it starts a
local Ray cluster. Rerun the same command after a crash to resume.
"""

import sys

from atheus_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
