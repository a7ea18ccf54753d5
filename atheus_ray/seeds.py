"""Seeds: the hand-written instructions everything else grows from, their taxonomy, loaders and checks.

A seed has `id`, `perspective`, `category`, `domain`, `instruction`, optional `input`, and `output` (a
reference answer); `perspective`, `category` and `domain` are keys of `seeds/taxonomy.yaml`, whose
`characteristics` are the QA4AI quality characteristics each perspective belongs to. Optional: `probe` (a key
of the taxonomy's `probes`: the trap the seed sets), `variant_of` (for a `paraphrase` probe, the id of the seed
it re-asks) and `as_of` (YYYY-MM, for an answer whose facts will age).

Sources (`load_seeds(paths)`): JSONL, CSV and Parquet files, folders of them, and Hugging Face datasets
written `hf:owner/name` or `hf:owner/name:split`. Each record is read in one of three formats:
- native: the fields above; an unknown perspective, category or domain is an error;
- Self-Instruct: `instruction` + `instances: [{input, output}, ...]` (one seed per instance);
- Alpaca: `instruction`, `input`, `output` and nothing to say what it tests.
Imported records (Self-Instruct, Alpaca) keep a `perspective` they carry if the taxonomy knows it and get
`default_perspective` otherwise; their category is `classification` for Self-Instruct's
`is_classification`, else `generation`, and their domain `daily_life`.

Every problem is reported as `where: field: message`, where `where` is `file:line` (JSONL, CSV) or
`file:row N` (Parquet, Hugging Face); `load_seeds` raises `SeedError` with all of them, never a partial list.

    atheus seeds validate seeds/     # table of perspective x category counts, or one line per problem
    atheus seeds stats seeds/        # counts, lengths, coverage gaps against the taxonomy
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from atheus_ray.rows import task_text
from atheus_ray.sources import expand_paths, records  # noqa: F401 (expand_paths: re-exported for callers of seeds)
from atheus_ray.text import near_duplicate_pairs

SEEDS_DIR = Path(__file__).resolve().parent.parent / "seeds"
TAXONOMY_PATH = SEEDS_DIR / "taxonomy.yaml"
MIN_PER_PERSPECTIVE = 40
LONG_INPUT_CHARS = 1500
# The kinds of seed the set must hold at least this many of (issue 16), counted by `coverage_kinds`.
COVERAGE_TARGETS = {
    "summarization": 25,
    "translation": 25,
    "long_input": 25,
    "dialogue": 25,
    "copyright": 25,
    "injection_or_exfiltration": 25,
    "invented_entity": 10,
    "unknown": 10,
    "paraphrase": 10,
}
DIALOGUE_TURN = re.compile(r"^(ユーザー|アシスタント)：", re.MULTILINE)
DUPLICATE_THRESHOLD = 0.7  # character-level ROUGE-L, as Self-Instruct's novelty filter
IMPORT_CATEGORY, IMPORT_DOMAIN = "generation", "daily_life"


class Seed(BaseModel):
    """One seed instruction with its reference answer."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str = Field(description="Unique, human-readable id, e.g. 'fluency-007'.")
    perspective: str = Field(description="Quality perspective key from the taxonomy.")
    category: str = Field(description="Task category key from the taxonomy.")
    domain: str = Field(description="Domain key from the taxonomy.")
    instruction: str = Field(description="The task, as a user writes it.")
    input: str | None = Field(None, description="Text or data the task works on, if any.")
    output: str = Field(description="Reference answer.")
    probe: str | None = Field(None, description="The trap the seed sets, a key of the taxonomy's `probes`.")
    variant_of: str | None = Field(
        None, description="For a `paraphrase` probe: the id of the seed that asks the same thing in other words."
    )
    as_of: str | None = Field(
        None,
        pattern=r"^\d{4}-\d{2}$",
        description="YYYY-MM when the reference answer states a fact that will age (a rate, a price, an office).",
    )

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
    characteristics: dict[str, str] = field(default_factory=dict)
    probes: dict[str, str] = field(default_factory=dict)

    def characteristic(self, perspective: str) -> str | None:
        """The QA4AI characteristic key (QC01...) a perspective belongs to, if the taxonomy says."""
        return self.perspectives[perspective].get("characteristic")

    def by_characteristic(self, per_perspective: Counter) -> dict[str, dict[str, int]]:
        """Counts per perspective grouped under each QA4AI characteristic ("QC01 回答性能": {perspective: n})."""
        return {
            f"{qc} {name}": {p: per_perspective[p] for p in self.perspectives if self.characteristic(p) == qc}
            for qc, name in self.characteristics.items()
        }


def load_taxonomy(path: str | Path = TAXONOMY_PATH) -> Taxonomy:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return Taxonomy(
        data["perspectives"],
        data["categories"],
        data["domains"],
        data.get("characteristics", {}),
        data.get("probes", {}),
    )


class SeedError(ValueError):
    """Bad seed sources; `problems` holds one `where: field: message` string per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in seed files:\n" + "\n".join(problems))


@dataclass(frozen=True)
class Located:
    """A loaded seed and where it came from (for messages)."""

    seed: Seed
    where: str


# ---------------------------------------------------------------------------------------------- formats


def _to_seed_dicts(record: object, where: str, taxonomy: Taxonomy, default_perspective: str) -> list[dict]:
    """Map one record (native, Self-Instruct or Alpaca) to seed dicts; raise ValueError for a bad shape."""
    if not isinstance(record, dict):
        raise ValueError(f"expected an object, got {type(record).__name__}")
    if "instances" in record:  # Self-Instruct
        instances = record["instances"]
        if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
            raise ValueError("instances: must be a non-empty list of {input, output} objects")
        base = record.get("id") or record.get("name") or _fallback_id(where)
        category = "classification" if record.get("is_classification") else IMPORT_CATEGORY
        return [
            _imported(
                record,
                f"{base}#{k}" if len(instances) > 1 else base,
                category,
                inst.get("input"),
                inst.get("output"),
                taxonomy,
                default_perspective,
            )
            for k, inst in enumerate(instances, 1)
        ]
    if {"category", "domain"} & record.keys():  # native (an Alpaca row may carry a perspective alone)
        return [record]
    # Alpaca
    return [
        _imported(
            record,
            record.get("id") or _fallback_id(where),
            IMPORT_CATEGORY,
            record.get("input"),
            record.get("output"),
            taxonomy,
            default_perspective,
        )
    ]


def _imported(record, seed_id, category, input_text, output, taxonomy, default_perspective) -> dict:
    perspective = record.get("perspective")
    return {
        "id": seed_id,
        "perspective": perspective if perspective in taxonomy.perspectives else default_perspective,
        "category": category,
        "domain": record.get("domain") if record.get("domain") in taxonomy.domains else IMPORT_DOMAIN,
        "instruction": record.get("instruction"),
        "input": input_text,
        "output": output,
    }


def _fallback_id(where: str) -> str:
    return where.replace(":row ", "-").replace(" row ", "-").replace(":", "-")


# ---------------------------------------------------------------------------------------------- loading


def load_located(
    paths: list[str | Path], taxonomy: Taxonomy | None = None, default_perspective: str = "helpfulness"
) -> list[Located]:
    """Read every source; raise SeedError listing every problem (no partial result)."""
    taxonomy = taxonomy or load_taxonomy()
    if default_perspective not in taxonomy.perspectives:
        raise SeedError([f"default perspective: {default_perspective!r} is not in the taxonomy"])
    found, problems, first = [], [], {}
    for source in map(str, paths):
        before = len(found) + len(problems)
        for where, record in records(source, problems):
            try:
                dicts = _to_seed_dicts(record, where, taxonomy, default_perspective)
            except ValueError as e:
                problems.append(f"{where}: (record): {e}")
                continue
            for data in dicts:
                seed = _validate(data, where, taxonomy, problems)
                if seed is None:
                    continue
                if seed.id in first:
                    problems.append(f"{where}: id: duplicate id {seed.id!r} (first at {first[seed.id]})")
                    continue
                first[seed.id] = where
                found.append(Located(seed, where))
        if len(found) + len(problems) == before:
            problems.append(f"{source}: (file): no seeds in it")
    for x in found:
        if x.seed.variant_of is not None and x.seed.variant_of not in first:
            problems.append(f"{x.where}: variant_of: no seed has id {x.seed.variant_of!r}")
    if problems:
        raise SeedError(problems)
    return found


def _validate(data: dict, where: str, taxonomy: Taxonomy, problems: list[str]) -> Seed | None:
    try:
        seed = Seed.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            field = ".".join(map(str, err["loc"])) or "(record)"
            msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{where}: {field}: {msg}")
        return None
    bad = False
    for name, allowed in (
        ("perspective", taxonomy.perspectives),
        ("category", taxonomy.categories),
        ("domain", taxonomy.domains),
        ("probe", taxonomy.probes),
    ):
        value = getattr(seed, name)
        if value is not None and value not in allowed:
            problems.append(f"{where}: {name}: unknown {name} {value!r} (not in the taxonomy)")
            bad = True
    if (seed.probe == "paraphrase") != (seed.variant_of is not None):
        problems.append(f"{where}: variant_of: set it exactly when probe is 'paraphrase'")
        bad = True
    return None if bad else seed


def load_seeds(paths: list[str | Path], taxonomy: Taxonomy | None = None, default_perspective: str = "helpfulness"):
    """Read every source into a list of Seed; raise SeedError listing every problem."""
    return [x.seed for x in load_located(paths, taxonomy, default_perspective)]


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


# ---------------------------------------------------------------------------------------------- checks


def duplicate_problems(located: list[Located], threshold: float = DUPLICATE_THRESHOLD) -> list[str]:
    """One problem per pair of seeds whose character-level ROUGE-L exceeds `threshold`."""
    pairs = near_duplicate_pairs([task_text(x.seed.instruction, x.seed.input) for x in located], threshold)
    return [
        f"{located[j].where}: instruction: near-duplicate of {located[i].seed.id} at {located[i].where} "
        f"(character ROUGE-L {score:.2f} > {threshold})"
        for i, j, score in pairs
    ]


def count_table(seeds: list[Seed], taxonomy: Taxonomy) -> str:
    """Perspective x category counts as an aligned text table, with totals."""
    counts = Counter((s.perspective, s.category) for s in seeds)
    cats = list(taxonomy.categories)
    width = max(map(len, taxonomy.perspectives)) + 1
    header = "perspective".ljust(width) + " ".join(c.rjust(max(len(c), 3)) for c in cats) + "  total"
    lines = [header, "-" * len(header)]
    for p in taxonomy.perspectives:
        cells = " ".join(str(counts[p, c]).rjust(max(len(c), 3)) for c in cats)
        lines.append(p.ljust(width) + cells + f"  {sum(counts[p, c] for c in cats):5d}")
    totals = " ".join(str(sum(counts[p, c] for p in taxonomy.perspectives)).rjust(max(len(c), 3)) for c in cats)
    lines += ["-" * len(header), "total".ljust(width) + totals + f"  {len(seeds):5d}"]
    return "\n".join(lines)


def is_dialogue(text: str | None) -> bool:
    """An input that gives earlier turns: at least two `ユーザー：`/`アシスタント：` lines, one of them the assistant's."""
    turns = DIALOGUE_TURN.findall(text or "")
    return len(turns) >= 2 and "アシスタント" in turns


def coverage_kinds(seed: Seed) -> set[str]:
    """The kinds of COVERAGE_TARGETS a seed counts towards."""
    kinds = {seed.category, seed.perspective, seed.probe or ""} & COVERAGE_TARGETS.keys()
    if seed.probe in ("prompt_injection", "exfiltration"):
        kinds.add("injection_or_exfiltration")
    if seed.input and len(seed.input) >= LONG_INPUT_CHARS:
        kinds.add("long_input")
    if is_dialogue(seed.input):
        kinds.add("dialogue")
    return kinds


def stats(seeds: list[Seed], taxonomy: Taxonomy) -> dict:
    """Counts (per QA4AI characteristic, perspective, category, domain, probe, coverage kind), length
    distributions (characters) and gaps against the taxonomy and COVERAGE_TARGETS."""

    def dist(values: list[int]) -> dict:
        q = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
        return {
            "min": min(values),
            "p10": round(q[0]),
            "median": round(statistics.median(values)),
            "p90": round(q[-1]),
            "max": max(values),
        }

    per = Counter(s.perspective for s in seeds)
    cat = Counter(s.category for s in seeds)
    dom = Counter(s.domain for s in seeds)
    covered = Counter(kind for s in seeds for kind in coverage_kinds(s))
    return {
        "seeds": len(seeds),
        "with_input": sum(s.input is not None for s in seeds),
        "by_characteristic": {k: {"seeds": sum(v.values()), **v} for k, v in taxonomy.by_characteristic(per).items()},
        "by_perspective": dict(per.most_common()),
        "by_category": dict(cat.most_common()),
        "by_domain": dict(dom.most_common()),
        "by_probe": dict(Counter(s.probe for s in seeds if s.probe).most_common()),
        "coverage": {kind: covered[kind] for kind in COVERAGE_TARGETS},
        "instruction_chars": dist([len(s.instruction) for s in seeds]),
        "input_chars": dist([len(s.input) for s in seeds if s.input]) if any(s.input for s in seeds) else None,
        "output_chars": dist([len(s.output) for s in seeds]),
        "gaps": {
            f"perspectives_under_{MIN_PER_PERSPECTIVE}": {
                p: per[p] for p in taxonomy.perspectives if per[p] < MIN_PER_PERSPECTIVE
            },
            "unused_categories": [c for c in taxonomy.categories if not cat[c]],
            "unused_domains": [d for d in taxonomy.domains if not dom[d]],
            "coverage_under_target": {
                kind: f"{covered[kind]} < {target}"
                for kind, target in COVERAGE_TARGETS.items()
                if covered[kind] < target
            },
        },
    }
