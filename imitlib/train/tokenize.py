"""Chat conversations → ``input_ids`` + ``labels`` with the loss on assistant tokens only.

The text comes from ``tokenizer.apply_chat_template`` (the template in :mod:`imitlib.chat` on
every student tokenizer), so training sees exactly what generation and evaluation see. The
assistant spans are found in character space by rendering each conversation prefix, mapped to
tokens through the fast tokenizer's offsets, and then checked: the supervised tokens must decode
back to the assistant texts (plus the eos after each turn). A mismatch raises
:class:`ChatMaskError` (or is counted by :func:`tokenize_conversations`); it never turns into an
example without loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from imitlib.train.loop import IGNORE_INDEX


class ChatMaskError(ValueError):
    """The loss mask of a conversation does not cover exactly its assistant text."""


def _render(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("tokenizer has no chat_template; set tokenizer.chat_template = imitlib.chat.CHAT_TEMPLATE")
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_char_spans(tokenizer, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of every assistant turn (content + eos).

    Raises:
        ChatMaskError: when the template does not render conversation prefixes as prefixes of the
            whole text, or an assistant turn is not found where expected.
    """
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"messages[{index}]: expected a dict with 'role' and 'content'")
    text = _render(tokenizer, messages)
    eos = tokenizer.eos_token or ""
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        head = _render(tokenizer, messages[:index], add_generation_prompt=True) if index else _render(
            tokenizer, [], add_generation_prompt=True)
        if not text.startswith(head):
            raise ChatMaskError(f"turn {index}: the chat template does not render prefixes consistently")
        body = message["content"] + eos
        start = text.find(body, len(head))
        if start < 0 or text[len(head):start].strip():
            raise ChatMaskError(f"turn {index}: assistant text not found right after its header")
        spans.append((start, start + len(body)))
    return text, spans


def tokenize_conversation(tokenizer, messages: Sequence[dict], max_len: int | None = None) -> dict:
    """Tokenize one conversation; labels are -100 except on assistant content and its eos.

    Args:
        tokenizer: a fast tokenizer with a chat template and an eos token.
        messages: ``[{"role": "user"|"assistant"|"system", "content": str}, ...]``.
        max_len: cut to this many tokens (``truncated`` then says so).

    Returns:
        ``{"input_ids": [...], "labels": [...], "truncated": bool, "assistant_tokens": int}``.

    Raises:
        ChatMaskError: when the supervised tokens do not decode back to the assistant texts.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("tokenize_conversation needs a fast tokenizer (character offsets)")
    text, spans = assistant_char_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(input_ids)
    per_span: list[list[int]] = [[] for _ in spans]
    for position, (start, end) in enumerate(enc["offset_mapping"]):
        if end <= start:
            continue
        for k, (span_start, span_end) in enumerate(spans):
            # a token is supervised when its text overlaps the span; a leading space it carries is fine
            if start < span_end and end > span_start:
                if text[start:span_start].strip():
                    raise ChatMaskError(
                        f"token {position} {text[start:end]!r} straddles the start of assistant turn {k}")
                labels[position] = input_ids[position]
                per_span[k].append(position)
                break
    unk_id = getattr(tokenizer, "unk_token_id", None)
    for k, positions in enumerate(per_span):
        span_start, span_end = spans[k]
        expected = text[span_start:span_end]
        covered = "".join(text[max(s, span_start):min(e, span_end)] for s, e in
                          (enc["offset_mapping"][p] for p in positions))
        contiguous = not positions or positions == list(range(positions[0], positions[-1] + 1))
        if "".join(covered.split()) != "".join(expected.split()) or not contiguous:
            raise ChatMaskError(f"assistant turn {k}: supervised tokens cover {covered!r}, expected {expected!r}")
        token_ids = [input_ids[p] for p in positions]
        if unk_id is None or unk_id not in token_ids:
            decoded = tokenizer.decode(token_ids, skip_special_tokens=False)
            if "".join(decoded.split()) != "".join(expected.split()):
                raise ChatMaskError(f"assistant turn {k}: supervised tokens decode to {decoded!r}, expected {expected!r}")
    truncated = max_len is not None and len(input_ids) > max_len
    if truncated:
        input_ids, labels = input_ids[:max_len], labels[:max_len]
    return {"input_ids": input_ids, "labels": labels, "truncated": truncated,
            "assistant_tokens": sum(1 for label in labels if label != IGNORE_INDEX)}


@dataclass
class TokenizeReport:
    """Counts from tokenizing a set of conversations."""

    n_conversations: int = 0
    n_kept: int = 0
    n_truncated: int = 0
    n_dropped_no_assistant: int = 0
    n_mask_mismatch: int = 0
    errors: list[str] = field(default_factory=list)   # first few mismatch messages


def tokenize_conversations(tokenizer, conversations: Sequence[Sequence[dict]], max_len: int | None = None,
                           max_mismatch_fraction: float = 0.0) -> tuple[list[dict], TokenizeReport]:
    """Tokenize many conversations, counting truncations, drops and mask mismatches.

    Raises:
        ChatMaskError: when more than ``max_mismatch_fraction`` of the conversations mismatch.
    """
    report = TokenizeReport(n_conversations=len(conversations))
    examples = []
    for index, messages in enumerate(conversations):
        try:
            enc = tokenize_conversation(tokenizer, messages, max_len)
        except ChatMaskError as exc:
            report.n_mask_mismatch += 1
            if len(report.errors) < 5:
                report.errors.append(f"conversation {index}: {exc}")
            continue
        report.n_truncated += int(enc["truncated"])
        if enc["assistant_tokens"] == 0:
            report.n_dropped_no_assistant += 1
            continue
        examples.append(enc)
    report.n_kept = len(examples)
    if conversations and report.n_mask_mismatch > max_mismatch_fraction * len(conversations):
        raise ChatMaskError(
            f"{report.n_mask_mismatch}/{len(conversations)} conversations have a loss mask that does not match "
            f"their assistant text; first: {report.errors[:2]}")
    return examples, report
