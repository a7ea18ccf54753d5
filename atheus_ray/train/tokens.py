"""Chat formatting for SFT: token ids with loss only on the assistant's tokens.

Every example goes through the tokenizer's chat template, so training and serving (vLLM applies the same
template from the exported tokenizer) see the same format. A tokenizer without a chat template (llm-jp-3 base
models) gets FALLBACK_TEMPLATE, an llm-jp style `### 指示:` / `### 応答:` format, which the export keeps.

Labels: the text of each assistant turn, from the first character after the template's generation prompt
through the end-of-turn marker the template writes, is located by rendering the conversation up to that turn
with and without it; tokens whose characters start inside such a span keep their id as label, all others get
-100. Locating spans in characters, then mapping tokens by their offsets, never assumes that tokenizing a
prefix gives a prefix of the tokens.
"""

from __future__ import annotations

IGNORE = -100
FALLBACK_TEMPLATE = (
    "{{ bos_token or '' }}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}### 指示:\n{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'assistant' %}### 応答:\n{{ m['content'] }}{{ eos_token }}\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}### 応答:\n{% endif %}"
)


class TemplateError(ValueError):
    """A chat template that renders a conversation's turns inconsistently (a turn changes what came before)."""


def ensure_chat_template(tokenizer) -> bool:
    """Give `tokenizer` the fallback template if it has none; return whether it was given."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = FALLBACK_TEMPLATE
    return True


def _render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def encode(messages: list[dict], tokenizer, max_length: int) -> dict | None:
    """{input_ids, labels} of a conversation, or None when it is longer than `max_length` tokens."""
    text = _render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1])
        if not (through.startswith(before) and text.startswith(through)):
            raise TemplateError(f"the chat template renders turn {i + 1} inconsistently with the turns before it")
        spans.append((len(before), len(through)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = encoded["input_ids"]
    if len(ids) > max_length:
        return None
    labels = [
        tok if any(a <= start < b for a, b in spans) else IGNORE
        for tok, (start, _) in zip(ids, encoded["offset_mapping"])
    ]
    return {"input_ids": ids, "labels": labels}
