"""Seeds: the hand-written instructions everything else grows from, and their taxonomy.

A seed file is JSONL, one object per line with `id`, `perspective`, `category`, `domain`, `instruction`,
optional `input`, and `output` (a reference answer). `perspective`, `category` and `domain` are keys of
`seeds/taxonomy.yaml`. `load_seeds()` reads files and reports every bad row as `file:line: field: message`.
"""

from __future__ import annotations

import glob
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SEEDS_DIR = Path(__file__).resolve().parent.parent / "seeds"
TAXONOMY_PATH = SEEDS_DIR / "taxonomy.yaml"


class Seed(BaseModel):
    """One seed instruction with its reference answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Unique, human-readable id, e.g. 'fluency-007'.")
    perspective: str = Field(description="Quality perspective key from the taxonomy.")
    category: str = Field(description="Task category key from the taxonomy.")
    domain: str = Field(description="Domain key from the taxonomy.")
    instruction: str = Field(description="The task, as a user writes it.")
    input: str | None = Field(None, description="Text or data the task works on, if any.")
    output: str = Field(description="Reference answer.")

    @field_validator("id", "perspective", "category", "domain", "instruction", "output")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("input")
    @classmethod
    def _blank_input_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None


@dataclass(frozen=True)
class Taxonomy:
    perspectives: dict[str, dict]
    categories: dict[str, str]
    domains: dict[str, str]


def load_taxonomy(path: str | Path = TAXONOMY_PATH) -> Taxonomy:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return Taxonomy(data["perspectives"], data["categories"], data["domains"])


class SeedError(ValueError):
    """Bad seed rows; `problems` holds one `file:line: field: message` string per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in seed files:\n" + "\n".join(problems))


def expand_paths(patterns: list[str], base: Path | None = None) -> list[Path]:
    """Expand globs (relative ones against `base`, default the working directory); a pattern that matches
    nothing is an error naming it."""
    paths: list[Path] = []
    for pattern in patterns:
        full = pattern if base is None or Path(pattern).is_absolute() else str(base / pattern)
        found = sorted(glob.glob(full))
        if not found:
            raise FileNotFoundError(f"no seed file matches {pattern}")
        paths += [Path(p) for p in found]
    return paths


def load_seeds(paths: list[str | Path], taxonomy: Taxonomy | None = None) -> list[Seed]:
    """Read JSONL seed files; raise SeedError listing every bad row (nothing is partially returned)."""
    taxonomy = taxonomy or load_taxonomy()
    seeds, problems, first_line = [], [], {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as e:
                    problems.append(f"{where}: (line): invalid JSON: {e.msg} at column {e.colno}")
                    continue
                if not isinstance(data, dict):
                    problems.append(f"{where}: (line): expected a JSON object, got {type(data).__name__}")
                    continue
                try:
                    seed = Seed.model_validate(data)
                except ValidationError as e:
                    for err in e.errors():
                        field = ".".join(map(str, err["loc"])) or "(line)"
                        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
                        problems.append(f"{where}: {field}: {msg}")
                    continue
                for field, allowed in (
                    ("perspective", taxonomy.perspectives),
                    ("category", taxonomy.categories),
                    ("domain", taxonomy.domains),
                ):
                    value = getattr(seed, field)
                    if value not in allowed:
                        problems.append(f"{where}: {field}: unknown {field} {value!r} (not in the taxonomy)")
                if seed.id in first_line:
                    problems.append(f"{where}: id: duplicate id {seed.id!r} (first at {first_line[seed.id]})")
                first_line.setdefault(seed.id, where)
                seeds.append(seed)
    if problems:
        raise SeedError(problems)
    return seeds


def round_robin(seeds: list[Seed], limit: int | None) -> list[Seed]:
    """Up to `limit` seeds taken in turn from each perspective (in file order within one), so a small
    sample still covers every perspective."""
    if limit is None or limit >= len(seeds):
        return list(seeds)
    groups: dict[str, list[Seed]] = defaultdict(list)
    for seed in seeds:
        groups[seed.perspective].append(seed)
    queues = [iter(g) for g in groups.values()]
    picked: list[Seed] = []
    while len(picked) < limit:
        for q in queues:
            seed = next(q, None)
            if seed is not None and len(picked) < limit:
                picked.append(seed)
    return picked
