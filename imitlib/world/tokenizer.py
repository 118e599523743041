"""The world's word-level tokenizer, trained with ``tokenizers`` and saved for ``AutoTokenizer``.

Byte-level pre-tokenization with a prefix space makes every word (name, value, template word) a
single token in one form (``Ġword``) and decoding exact; punctuation is split off words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from imitlib.chat import ASSISTANT_TAG, CHAT_TEMPLATE, CONVERSATION_START, USER_TAG

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [PAD, UNK, BOS, EOS]


def train_tokenizer(texts: Iterable[str]):
    """A word-level ``PreTrainedTokenizerFast`` whose vocabulary is every word of ``texts``.

    The chat template (``imitlib.chat.CHAT_TEMPLATE``), bos/eos/pad/unk tokens are set on it.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, min_frequency=1, show_progress=False)
    chat_words = [f"{CONVERSATION_START} {USER_TAG} x {ASSISTANT_TAG} x"]
    core.train_from_iterator(list(texts) + chat_words, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 4096
    return tokenizer


def save_tokenizer(tokenizer, path: Path) -> Path:
    """Save with ``save_pretrained`` (``AutoTokenizer.from_pretrained(path)`` loads it back)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(path))
    return path


def decode_exact(tokenizer, ids: list[int]) -> str:
    """Decode ids to text, dropping the prefix space the pre-tokenizer adds."""
    text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return text[1:] if text.startswith(" ") else text
