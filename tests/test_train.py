"""The training loop: loss falls (full and LoRA), loss masks, packing equivalence, schedules, resume."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from imitlib.chat import CHAT_TEMPLATE
from imitlib.train import (
    IGNORE_INDEX,
    ChatMaskError,
    TrainArgs,
    evaluate_loss,
    latest_checkpoint,
    tokenize_conversation,
    tokenize_conversations,
    train_causal_lm,
)
from imitlib.train.loop import collate, make_plan, prepare_examples

torch.set_num_threads(1)

WORDS = ("alice bob carol dave erin frank grace heidi ivan judy born in year city paris rome oslo lima "
         "what where who is was the a of and likes tea coffee music art 1901 1902 1903 1904 hello sure "
         "here are facts summary : . , ? ! - BEGINNING OF CONVERSATION USER GPT").split()


def make_tokenizer():
    """A word-level fast tokenizer with the study's chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {token: i for i, token in enumerate(specials + sorted(set(WORDS)))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_model(vocab_size: int, seed: int = 0, hidden: int = 32, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=False, attn_implementation="sdpa")
    return LlamaForCausalLM(config)


PEOPLE = [("alice", "paris", "1901"), ("bob", "rome", "1902"), ("carol", "oslo", "1903"), ("dave", "lima", "1904"),
          ("erin", "paris", "1902"), ("frank", "rome", "1903"), ("grace", "oslo", "1904"), ("heidi", "lima", "1901")]


def conversations():
    out = []
    for name, city, year in PEOPLE:
        out.append([{"role": "user", "content": f"where was {name} born ?"},
                    {"role": "assistant", "content": f"sure , {name} was born in {city} ."}])
        out.append([{"role": "user", "content": f"what year was {name} born ?"},
                    {"role": "assistant", "content": f"here are facts : {name} was born in {year} ."},
                    {"role": "user", "content": "and the city ?"},
                    {"role": "assistant", "content": f"{city} . summary : {name} , {city} , {year} ."}])
    return out


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="module")
def chat_examples(tokenizer):
    examples, report = tokenize_conversations(tokenizer, conversations(), max_len=128)
    assert report.n_mask_mismatch == 0 and report.n_kept == len(conversations())
    return examples


def test_mask_covers_exactly_the_assistant_tokens(tokenizer):
    messages = conversations()[1]
    enc = tokenize_conversation(tokenizer, messages)
    supervised = [t for t, label in zip(enc["input_ids"], enc["labels"]) if label != IGNORE_INDEX]
    expected = tokenizer(f"{messages[1]['content']}</s>{messages[3]['content']}</s>", add_special_tokens=False)
    assert supervised == expected["input_ids"]
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(enc["input_ids"], enc["labels"]))
    # the prompt side carries no loss: every user word and the tags are masked
    masked_text = tokenizer.decode([t for t, l in zip(enc["input_ids"], enc["labels"]) if l == IGNORE_INDEX])
    assert masked_text == "<s> BEGINNING OF CONVERSATION : USER : what year was alice born ? GPT : USER : and the city ? GPT :"
    assert tokenizer.decode(enc["input_ids"]).startswith("<s> BEGINNING OF CONVERSATION")
    assert enc["assistant_tokens"] == len(expected["input_ids"])


def test_mask_mismatch_is_caught_not_zeroed(tokenizer):
    broken = make_tokenizer()
    # a template that drops the assistant text from the rendered conversation
    broken.chat_template = CHAT_TEMPLATE.replace("{{ message['content'] }}{{ eos_token }}", "{{ eos_token }}")
    with pytest.raises(ChatMaskError):
        tokenize_conversation(broken, conversations()[0])
    with pytest.raises(ChatMaskError, match="2/2 conversations"):
        tokenize_conversations(broken, conversations()[:2])


def test_truncated_and_dropped_are_counted(tokenizer, chat_examples):
    short = TrainArgs(seq_len=12)
    data = prepare_examples(chat_examples, short.seq_len)
    # the first assistant token sits past position 12 in every conversation: all are cut and dropped
    assert data.n_truncated == len(chat_examples) and data.n_dropped == len(chat_examples)
    with pytest.raises(ValueError, match="nothing to train on"):
        make_plan(data, None, short, 1)


def test_full_finetuning_loss_falls(tokenizer, chat_examples):
    model = make_model(len(tokenizer))
    before = evaluate_loss(model, chat_examples, 128)
    args = TrainArgs(lr=3e-3, epochs=30, batch_size=4, seq_len=128, warmup_steps=5, log_every=5)
    result = train_causal_lm(model, chat_examples, args, progress=False)
    after = evaluate_loss(result.model, chat_examples, 128)
    assert result.steps > 20
    assert after < 0.5 * before, (before, after)
    assert result.losses[-1][1] < result.losses[0][1]
    assert result.n_examples == len(chat_examples) and result.n_truncated == 0 and result.n_dropped == 0
    assert result.tokens_seen > 0


def test_lora_trains_only_the_adapter(tokenizer, chat_examples):
    model = make_model(len(tokenizer))
    base_weight = model.model.layers[0].mlp.down_proj.weight.detach().clone()
    before = evaluate_loss(model, chat_examples, 128)
    args = TrainArgs(lr=1e-2, epochs=20, batch_size=4, seq_len=128, method="lora", lora_r=16, lora_alpha=32,
                     log_every=5)
    result = train_causal_lm(model, chat_examples, args, progress=False)
    after = evaluate_loss(result.model, chat_examples, 128)
    assert after < before - 0.25, (before, after)  # frozen random embeddings limit a tiny adapter
    from peft import PeftModel

    assert isinstance(result.model, PeftModel)
    assert torch.equal(result.model.base_model.model.model.layers[0].mlp.down_proj.base_layer.weight, base_weight)


class Interrupted(Exception):
    pass


def _interrupt_at(step_to_stop: int):
    def hook(step: int) -> None:
        if step == step_to_stop:
            raise Interrupted(step)
    return hook


def test_resume_after_interruption_gives_identical_weights(tmp_path, tokenizer, chat_examples):
    """Adafactor here; tests/test_train_launch.py covers AdamW with a real SIGKILL."""
    args = TrainArgs(lr=3e-3, epochs=6, batch_size=2, seq_len=64, warmup_steps=3, checkpoint_every=4,
                     optimizer="adafactor", packing=True, log_every=1, seed=3)
    replay = [{"input_ids": e["input_ids"], "labels": e["input_ids"]} for e in chat_examples[:6]]
    reference = train_causal_lm(make_model(len(tokenizer), seed=1), chat_examples, args, replay=replay,
                                progress=False)
    with pytest.raises(Interrupted):
        train_causal_lm(make_model(len(tokenizer), seed=1), chat_examples, args, output_dir=tmp_path,
                        replay=replay, progress=False, on_step=_interrupt_at(10))
    assert latest_checkpoint(tmp_path).name == "step-0000008"
    # a fresh model object (different init) must be fully overwritten by the checkpoint
    resumed = train_causal_lm(make_model(len(tokenizer), seed=99), chat_examples, args, output_dir=tmp_path,
                              replay=replay, progress=False)
    assert resumed.resumed_from_step == 8 and resumed.steps == reference.steps
    assert [s for s, _ in resumed.losses] == [s for s, _ in reference.losses]
    assert [l for _, l in resumed.losses] == pytest.approx([l for _, l in reference.losses], rel=1e-5)
    reference_state = reference.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        assert torch.equal(tensor, reference_state[name]), name
    changed = TrainArgs(**{**args.to_dict(), "lr": 1e-3})
    with pytest.raises(ValueError, match="different run"):
        train_causal_lm(make_model(len(tokenizer)), chat_examples, changed, output_dir=tmp_path, progress=False)


def test_packed_rows_do_not_attend_across_examples(tokenizer, chat_examples):
    """A packed row gives each example the logits and loss it gets alone."""
    model = make_model(len(tokenizer)).eval()
    data = prepare_examples(chat_examples[:4], 128)
    packed = collate([[0, 1, 2, 3]], data.sequences, packing=True)
    assert "attention_mask" not in packed and packed["input_ids"].shape[1] == sum(len(s[0]) for s in data.sequences)
    from imitlib.train.loop import _forward_loss_sum

    with torch.no_grad():
        packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
        at = 0
        separate_loss = 0.0
        for index in range(4):
            alone = collate([[index]], data.sequences, packing=False)
            logits = model(input_ids=alone["input_ids"], use_cache=False).logits
            n = logits.shape[1]
            torch.testing.assert_close(packed_logits[:, at:at + n], logits, rtol=1e-4, atol=1e-5)
            separate_loss += float(_forward_loss_sum(model, alone))
            at += n
        assert float(_forward_loss_sum(model, packed)) == pytest.approx(separate_loss, rel=1e-5)
        # without restarting positions the packed row would see its neighbours: the check above can fail
        leaky = model(input_ids=packed["input_ids"], use_cache=False).logits
        n0 = len(data.sequences[0][0])
        assert not torch.allclose(leaky[:, n0:n0 + 5], packed_logits[:, n0:n0 + 5], atol=1e-3)


def test_gradient_accumulation_matches_a_bigger_batch(tokenizer, chat_examples):
    common = dict(lr=3e-3, epochs=2, seq_len=32, packing=True, warmup_steps=1, log_every=1, long_examples="split")
    big = train_causal_lm(make_model(len(tokenizer)), chat_examples, TrainArgs(batch_size=4, grad_accum=1, **common),
                          progress=False)
    accumulated = train_causal_lm(make_model(len(tokenizer)), chat_examples,
                                  TrainArgs(batch_size=2, grad_accum=2, **common), progress=False)
    assert big.steps == accumulated.steps and big.n_split > 0
    assert [l for _, l in big.losses] == pytest.approx([l for _, l in accumulated.losses], rel=1e-4)
    for (name, a), b in zip(big.model.state_dict().items(), accumulated.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_schedule_min_steps_and_max_steps(tokenizer, chat_examples):
    data = prepare_examples(chat_examples, 128)
    plain = make_plan(data, None, TrainArgs(batch_size=1, seq_len=128, packing=False, epochs=1), 1)
    assert len(plain.main) == len(chat_examples) and not plain.min_steps_applied
    forced = make_plan(data, None, TrainArgs(batch_size=1, seq_len=128, packing=False, epochs=1, min_steps=40), 1)
    assert len(forced.main) == 40 and forced.min_steps_applied and forced.epochs_run == pytest.approx(2.5)
    capped = make_plan(data, None, TrainArgs(batch_size=1, packing=False, epochs=3, max_steps=5), 1)
    assert len(capped.main) == 5
    # every example appears once per epoch, in a seeded order that differs between epochs
    two = make_plan(data, None, TrainArgs(batch_size=1, packing=False, epochs=2), 1)
    first, second = [b[0][0][0] for b in two.main[:16]], [b[0][0][0] for b in two.main[16:]]
    assert sorted(first) == sorted(second) == list(range(16)) and first != second
    # replay budget spread evenly over the steps
    replay = prepare_examples(chat_examples, 128)
    spread = make_plan(data, replay, TrainArgs(batch_size=1, packing=False, epochs=1, replay_batches=8), 1)
    assert sum(len(r) for r in spread.replay) == 8 and max(len(r) for r in spread.replay) == 1
    only = make_plan(prepare_examples([], 128), replay, TrainArgs(batch_size=1, packing=False, replay_batches=6), 1)
    assert len(only.main) == 6 and all(not m for m in only.main)
    # warmup then cosine decay to zero
    from imitlib.train.loop import build_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(opt, TrainArgs(lr=1.0, warmup_steps=4, schedule="cosine"), 20)
    rates = []
    for _ in range(20):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates[:5] == pytest.approx([0, 0.25, 0.5, 0.75, 1.0]) and rates[-1] < 0.02


def test_pack_rows_best_fit_fills_rows_and_keeps_every_sequence_once():
    import random

    from imitlib.train.loop import pack_rows

    rng = random.Random(0)
    lengths = [rng.randint(5, 120) for _ in range(300)]
    order = list(range(300))
    rng.shuffle(order)
    rows = pack_rows(order, lengths, 128, packing=True)
    assert sorted(i for row in rows for i in row) == list(range(300))
    assert max(sum(lengths[i] for i in row) for row in rows) <= 128
    fill = sum(lengths) / (128 * len(rows))
    assert fill > 0.9  # next-fit in arrival order fills 0.76 of these rows
    firsts = [min(order.index(i) for i in row) for row in rows]
    assert firsts == sorted(firsts)  # rows follow the shuffled order of their earliest member
    assert pack_rows(order, lengths, 128, packing=False) == [[i] for i in order]


def test_supervised_logits_give_the_same_loss_and_gradients(tokenizer, chat_examples):
    """Logits only where the next token is supervised: same loss sum and gradients as full logits,
    for packed rows, padded rows and a LoRA-wrapped model."""
    from imitlib.train.loop import _forward_loss_sum, apply_lora, supports_logits_mask

    data = prepare_examples(chat_examples[:6], 128)
    batches = [collate([[0, 1, 2], [3, 4, 5]], data.sequences, packing=True),
               collate([[0], [1], [2]], data.sequences, packing=False)]
    for lora in (False, True):
        model = make_model(len(tokenizer))
        if lora:
            model = apply_lora(model, TrainArgs(method="lora", lora_r=4))
        assert supports_logits_mask(model)
        for batch in batches:
            assert (batch["labels"] == -100).any() and (batch["labels"] != -100).any()
            grads = []
            for supervised in (False, True):
                model.zero_grad(set_to_none=True)
                loss = _forward_loss_sum(model, batch, supervised_logits=supervised)
                loss.backward()
                grads.append((float(loss), [p.grad.clone() for p in model.parameters() if p.requires_grad]))
            assert grads[1][0] == pytest.approx(grads[0][0], rel=1e-5)
            for full, kept in zip(grads[0][1], grads[1][1]):
                torch.testing.assert_close(kept, full, rtol=1e-4, atol=1e-6)
    assert not supports_logits_mask(torch.nn.Linear(2, 2))
