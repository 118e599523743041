"""The one chat format of the study, applied identically in training, generation and evaluation.

Koala style: ``BEGINNING OF CONVERSATION: USER: … GPT: …<eos>``. The template is stored on every
student tokenizer (``tokenizer.chat_template``) so ``apply_chat_template`` gives the same text
everywhere; models with a template of their own (a real teacher) keep theirs.
"""

from __future__ import annotations

CONVERSATION_START = "BEGINNING OF CONVERSATION:"
USER_TAG = "USER:"
ASSISTANT_TAG = "GPT:"

# Jinja template for transformers' apply_chat_template. A system message is folded into the first
# user turn. Each assistant turn ends with the tokenizer's eos token.
CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}" + CONVERSATION_START +
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %} {{ message['content'] }}"
    "{% elif message['role'] == 'user' %} " + USER_TAG + " {{ message['content'] }}"
    "{% elif message['role'] == 'assistant' %} " + ASSISTANT_TAG + " {{ message['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %} " + ASSISTANT_TAG + "{% endif %}"
)


def render(messages: list[dict[str, str]], eos_token: str = "", bos_token: str = "",
           add_generation_prompt: bool = False) -> str:
    """Render messages to text exactly as ``CHAT_TEMPLATE`` does (no tokenizer needed)."""
    text = (bos_token or "") + CONVERSATION_START
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            text += f" {content}"
        elif role == "user":
            text += f" {USER_TAG} {content}"
        elif role == "assistant":
            text += f" {ASSISTANT_TAG} {content}{eos_token}"
        else:
            raise ValueError(f"unknown chat role {role!r} (expected system, user or assistant)")
    if add_generation_prompt:
        text += f" {ASSISTANT_TAG}"
    return text
