"""SFT as a job: every data condition x model on Ray Train, exported as folders vLLM loads.

    python jobs/sft.py --config jobs/configs/sft.yaml [--set key=value ...]
    ray job submit --working-dir . -- python jobs/sft.py --config jobs/configs/cluster/sft.yaml

Under `ray job submit` the job joins the cluster it was submitted to (RAY_ADDRESS); run by hand it starts a
local Ray cluster. Rerun the same command after a crash to resume from the latest checkpoint.
"""

import sys

from atheus_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
