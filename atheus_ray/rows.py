"""The row contract shared by every stage (see DESIGN.md, "Data contract").

Every row carries a stable `id`, a content hash of what the row *is* (its instruction and input), never a
random UUID, so reruns produce the same ids and resume works. The lineage columns below are never dropped:

- `parent_id`: id of the row this one was derived from (None for Self-Instruct rows)
- `seed_ids`: ids of the seeds that led to this row
- `origin`: `self_instruct` | `evol_depth:<op>` | `evol_breadth` (`seed` is reserved for seed rows)
- `round`: Evol-Instruct steps behind this row (0 for Self-Instruct rows)
- `domain`, `perspective`: taxonomy keys (seeds/taxonomy.yaml)
- `generator_model`: the model that wrote the instruction
- `prompt_version`: hash of the prompt file that produced the instruction
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

LINEAGE_COLUMNS = (
    "id",
    "parent_id",
    "seed_ids",
    "origin",
    "round",
    "domain",
    "perspective",
    "generator_model",
    "prompt_version",
)


def content_id(*parts: str | None) -> str:
    """A 16-hex-digit SHA-256 of the parts (None counts as empty), stable across runs and machines."""
    h = hashlib.sha256()
    for part in parts:
        h.update((part or "").encode("utf-8"))
        h.update(b"\x1f")  # unit separator: ("ab", "c") and ("a", "bc") differ
    return h.hexdigest()[:16]


def prompt_version(path: str | Path) -> str:
    """The version of a prompt file: a hash of its bytes, so any edit gives a new version."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


@functools.cache
def read_prompt(path: Path) -> tuple[str, str]:
    """A prompt file's text and its version, read once per process: stages build a request per row."""
    data = Path(path).read_bytes()
    return data.decode("utf-8"), hashlib.sha256(data).hexdigest()[:12]


def task_text(instruction: str, input_text: str | None) -> str:
    """A task as one text (instruction, then its input on the next line): what near-duplicates are judged on."""
    return instruction + ("\n" + input_text if input_text else "")


def user_message(instruction: str, input_text: str | None) -> str:
    """The user turn of a task: the instruction, then its input (if any) after a blank line."""
    return instruction if not input_text else f"{instruction}\n\n{input_text}"
