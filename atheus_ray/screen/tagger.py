"""LLM tagging, the way Magpie screened its data: an LLM reads each pair and returns its tags as JSON.

One request per row (prompts/screen/tag.md), decoded under a JSON schema (vLLM structured outputs, or
`response_format` on an OpenAI-compatible endpoint), then parsed strictly by `parse_tags`.

Reads:  `instruction`, `input`, and the answer (`response`, or `output` in other data sets).
Writes: `quality` (input quality 1-5), `quality_reason` (one short sentence, written before the score, as
        are the others), `difficulty` (1-5) and `difficulty_reason`,
        `task_category` (a category key of seeds/taxonomy.yaml), `request_safety` (`safe` | `unsafe`: what
        the instruction asks for), `safety` (`safe` | `unsafe`: the answer; a careful refusal of a harmful
        request is safe), `safety_category` (`none` when both are safe), `score` (response quality 1-10, judged
        against the row's perspective and the instruction's explicit constraints) and `score_reason`,
        `tagger_model`, `tagger_prompt_version`.
Rejects: a row whose output does not parse gets `reject_reason = "tag_parse_error"` and the parser's message
        in `detail`; one that got no answer (`prompt_too_long`, `http_<status>`: atheus_ray.engine.Engine.generate)
        gets that reason; the run goes on.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

from atheus_ray.config import TaggerConfig
from atheus_ray.engine import error_reason, sampling_params
from atheus_ray.rows import read_prompt
from atheus_ray.seeds import Taxonomy
from atheus_ray.text import lone_surrogate

PROMPT = Path(__file__).resolve().parent.parent / "prompts" / "screen" / "tag.md"
SAFETY_CATEGORIES = {  # key: what the tagger is told it means
    "none": "どちらも安全",
    "violence": "暴力・武器による危害",
    "crime": "犯罪・違法行為（窃盗、詐欺、不正アクセスなど）",
    "self_harm": "自傷・自殺",
    "sexual": "性的な内容",
    "hate_discrimination": "差別・ヘイト",
    "privacy": "プライバシーの侵害（個人の特定、個人情報の拡散）",
    "dangerous_goods": "危険物・違法薬物の製造や入手",
    "misinformation": "誤情報・デマの作成や拡散",
    "other": "その他の有害な内容",
}
TAG_COLUMNS = (
    "quality",
    "quality_reason",
    "difficulty",
    "difficulty_reason",
    "task_category",
    "request_safety",
    "safety",
    "safety_category",
    "score",
    "score_reason",
    "tagger_model",
    "tagger_prompt_version",
)
REASON_CHARS = 80
NO_PERSPECTIVE = "（指定なし。一般的な指示として評価する）"


class TagParseError(ValueError):
    """Tagger output that cannot be read as tags; the message says what was wrong."""


def schema(categories: list[str], reason_chars: int = REASON_CHARS) -> dict:
    """The JSON schema the tagger decodes under. Its field order is the order the model writes them: each
    score's reason before the score, so the score follows from the reason rather than the reason from it."""
    reason = {"type": "string", "maxLength": reason_chars}
    properties = {
        "quality_reason": reason,
        "input_quality": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
        "difficulty_reason": reason,
        "difficulty": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
        "task_category": {"type": "string", "enum": list(categories)},
        "request_safety": {"type": "string", "enum": ["safe", "unsafe"]},
        "safety": {"type": "string", "enum": ["safe", "unsafe"]},
        "safety_category": {"type": "string", "enum": list(SAFETY_CATEGORIES)},
        "score_reason": reason,
        "response_quality": {"type": "integer", "enum": list(range(1, 11))},
    }
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def answer_of(row: dict) -> str:
    """The answer of a pair: `response` (synthesis output) or `output` (other data sets)."""
    return row.get("response") if row.get("response") is not None else row.get("output") or ""


def tag_request(row: dict, taxonomy: Taxonomy, cfg: TaggerConfig) -> dict:
    """A chat request {key, messages, sampling_params} asking for the tags of `row`: told the row's
    perspective (its name and definition in the taxonomy) and what each category and safety category means."""
    input_block = f"\n# 入力\n{row['input']}\n" if row.get("input") else ""
    perspective = taxonomy.perspectives.get(row.get("perspective") or "")
    prompt = read_prompt(PROMPT)[0].format(
        perspective=f"{perspective['name']}: {perspective['definition']}" if perspective else NO_PERSPECTIVE,
        categories="\n".join(f"  - {key}: {name}" for key, name in taxonomy.categories.items()),
        safety_categories="\n".join(f"  - {key}: {name}" for key, name in SAFETY_CATEGORIES.items()),
        instruction=row["instruction"],
        input_block=input_block,
        response=answer_of(row),
    )
    structured = {"json": json.dumps(schema(list(taxonomy.categories), cfg.reason_chars))}
    return {
        "key": f"tag/{row['id']}",
        "messages": [{"role": "user", "content": prompt}],
        "sampling_params": sampling_params(cfg.sampling, structured),
    }


def _json_object(text: str) -> dict:
    """The first JSON object in `text`, tolerating code fences and prose around it."""
    start = text.find("{")
    if start == -1:
        raise TagParseError("no JSON object in the output")
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        raise TagParseError(f"invalid JSON: {e.msg} at character {start + e.pos}") from None
    if not isinstance(value, dict):
        raise TagParseError("the JSON is not an object")
    return value


def _level(data: dict, key: str, top: int) -> int:
    """An integer 1..top from a number or a string such as "4", "４", "8/10", "4点"."""
    if key not in data:
        raise TagParseError(f"{key}: missing")
    value = data[key]
    if isinstance(value, bool):
        raise TagParseError(f"{key}: not a number: {value!r}")
    if isinstance(value, str):
        match = re.match(r"\s*(\d+)(\s*/\s*\d+|\s*点)?\s*$", unicodedata.normalize("NFKC", value))
        if not match:
            raise TagParseError(f"{key}: not a number: {value!r}")
        value = int(match.group(1))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 1 <= value <= top:
        raise TagParseError(f"{key}: expected an integer 1-{top}, got {value!r}")
    return value


def _choice(data: dict, key: str, allowed: list[str] | tuple[str, ...]) -> str:
    if key not in data:
        raise TagParseError(f"{key}: missing")
    value = str(data[key]).strip().lower()
    if value not in allowed:
        raise TagParseError(f"{key}: {data[key]!r} is not one of {', '.join(allowed)}")
    return value


def parse_tags(text: str, categories: list[str]) -> dict:
    """The screening columns from one tagger output; raises TagParseError saying what was wrong."""
    data = _json_object(text)
    bad = next((lone_surrogate(v) for v in data.values() if isinstance(v, str) and lone_surrogate(v)), None)
    if bad:
        raise TagParseError(f"lone surrogate {bad} in the JSON (no text can carry it)")
    request_safety = _choice(data, "request_safety", ("safe", "unsafe"))
    safety = _choice(data, "safety", ("safe", "unsafe"))
    safety_category = _choice(data, "safety_category", SAFETY_CATEGORIES)
    return {
        "quality": _level(data, "input_quality", 5),
        "quality_reason": _reason(data, "quality_reason"),
        "difficulty": _level(data, "difficulty", 5),
        "difficulty_reason": _reason(data, "difficulty_reason"),
        "task_category": _choice(data, "task_category", categories),
        "request_safety": request_safety,
        "safety": safety,
        "safety_category": "none" if safety == request_safety == "safe" else safety_category,
        "score": _level(data, "response_quality", 10),
        "score_reason": _reason(data, "score_reason"),
    }


def _reason(data: dict, key: str) -> str:
    """A reason as text (an absent one is empty: the scores are what selection needs)."""
    return str(data.get(key) or "").strip()[:REASON_CHARS]


def with_tags(rows: list[dict], outputs: list[dict], categories: list[str], model_name: str) -> tuple[list, list]:
    """Rows with their tags, and the rows whose tagger output did not parse (with `reject_reason`)."""
    version = read_prompt(PROMPT)[1]
    tagged, rejected = [], []
    for row, output in zip(rows, outputs):
        failed = error_reason(output)
        if failed:  # no answer at all (a prompt too long for the tagger, an endpoint error)
            rejected.append({**row, "reject_reason": failed[0], "detail": failed[1]})
            continue
        try:
            tags = parse_tags(output["text"], categories)
        except TagParseError as e:
            rejected.append({**row, "reject_reason": "tag_parse_error", "detail": str(e)})
            continue
        tagged.append({**row, **tags, "tagger_model": model_name, "tagger_prompt_version": version})
    return tagged, rejected
