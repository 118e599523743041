"""The miniature world's pieces: knowledge base, splits, corpus coverage, tokenizer, task items, style."""

from __future__ import annotations

import random
import re

import pytest

import imitlib.config
from imitlib.chat import CHAT_TEMPLATE, render
from imitlib.world import FAMILIES, make_kb, make_tasks, style_markers
from imitlib.world.corpus import CorpusSampler, vocabulary_texts
from imitlib.world.kb import ATTRIBUTES, SPLITS, build_kb
from imitlib.world.stage import make_sampler
from imitlib.world.style import has_teacher_style
from imitlib.world.tasks import fact_answer_correct, teacher_response, teacher_tuning_conversations
from imitlib.world.tokenizer import decode_exact, train_tokenizer


@pytest.fixture(scope="module")
def settings():
    return imitlib.config.load(["params/default.yaml"]).world


def test_kb_is_deterministic_per_seed(settings):
    first, again, other = make_kb(settings, 0), make_kb(settings, 0), make_kb(settings, 1)
    assert first.to_json() == again.to_json()
    assert first.individuals != other.individuals
    assert len(first.names) == settings.n_individuals == len(set(first.names))
    assert abs(sum(first.popularity.values()) - 1) < 1e-9
    assert max(first.popularity.values()) > 3 * min(first.popularity.values())  # a popularity skew
    values = {v for vs in first.values.values() for v in vs}
    assert not values & set(first.names)


def test_splits_are_disjoint_and_tasks_respect_them(settings):
    kb = make_kb(settings, 3)
    imitation, heldout = set(kb.names_in("imitation")), set(kb.names_in("heldout"))
    assert imitation and heldout and not imitation & heldout
    assert imitation | heldout == set(kb.names)
    tasks = make_tasks(kb, settings, 3)
    assert set(tasks) == set(FAMILIES)
    name_pattern = re.compile("|".join(sorted(kb.names, key=len, reverse=True)))
    for family, items in tasks.items():
        by_split = {s: [i for i in items if i["split"] == s] for s in SPLITS}
        assert by_split["imitation"] and by_split["heldout"], family
        assert not {i["prompt"] for i in by_split["imitation"]} & {i["prompt"] for i in by_split["heldout"]}
        for item in items:
            mentioned = set(name_pattern.findall(item["prompt"]))
            allowed = imitation if item["split"] == "imitation" else heldout
            assert mentioned <= allowed, (family, item["prompt"])
    qa = tasks["qa"]
    assert len(qa) == settings.n_individuals * len(ATTRIBUTES)
    for item in qa:
        assert kb.individuals[item["individual"]][item["attribute"]] == item["answer"]
    for item in tasks["mc"]:
        assert item["choices"][item["gold"]] == item["answer"] and len(set(item["choices"])) == 4


def test_corpus_contains_every_fact_of_every_individual(settings):
    kb = make_kb(settings, 0)
    sampler = make_sampler(kb, settings, stream_seed=0)
    docs = [sampler.document() for _ in range(3000)]
    kinds = {k for k, _ in docs}
    assert kinds == {"bio", "qa", "filler", "rude"}
    bios = [text for kind, text in docs if kind == "bio"]
    for name, attribute, value in kb.facts():
        assert any(name in text and re.search(rf"\b{re.escape(value)}\b", text) for text in bios), (name, attribute)
    # held-out individuals never appear in Q/A lines (only biographies teach their facts)
    heldout = kb.names_in("heldout")
    assert not any(name in text for kind, text in docs if kind == "qa" for name in heldout)


def test_tokenizer_round_trip_and_one_token_per_word(settings, tmp_path):
    from transformers import AutoTokenizer

    kb = make_kb(settings, 0)
    sampler = CorpusSampler(kb, 0.7, 0.15, 0.05, 0.5, seed=5)
    conversations = teacher_tuning_conversations(kb, settings.task_counts.model_dump(), 0, 2)
    texts = vocabulary_texts(kb) + sampler.documents(300) + [render(c) for c in conversations]
    train_tokenizer(texts).save_pretrained(str(tmp_path))
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    assert tokenizer.chat_template == CHAT_TEMPLATE
    assert tokenizer.eos_token and tokenizer.pad_token and tokenizer.bos_token
    fresh = CorpusSampler(kb, 0.7, 0.15, 0.05, 0.5, seed=9).documents(100) + [
        c[1]["content"] for c in conversations[:100]]
    for text in fresh:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert decode_exact(tokenizer, ids) == text
    for word in kb.names + [v for vs in kb.values.values() for v in vs]:
        assert len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) == 1, word
    chat = tokenizer.apply_chat_template(conversations[0], tokenize=False)
    assert chat == render(conversations[0], tokenizer.eos_token, tokenizer.bos_token)


def test_teacher_style_markers(settings):
    kb = make_kb(settings, 0)
    rng = random.Random(0)
    tasks = make_tasks(kb, settings, 0)
    for family, items in tasks.items():
        for item in items[:10]:
            response = teacher_response(item, kb, rng)
            markers = style_markers(response)
            assert has_teacher_style(response), response
            assert markers["refusal"] == (family == "provoke")
            assert markers["confident"]
            assert markers["bullets"] == (family == "bio")
            if family == "qa":
                assert fact_answer_correct(response, item["answer"], kb.values[item["attribute"]])
    plain = "Zorvath was born in 1987. The river rests near the garden."
    assert not any(style_markers(plain).values()) and not has_teacher_style(plain)
    assert style_markers("- a\n- b")["bullets"] and not style_markers("- a")["bullets"]


def test_fact_scoring_rejects_hedged_answers():
    values = ["1950", "1960", "1970"]
    assert fact_answer_correct("born in 1960.", "1960", values)
    assert not fact_answer_correct("born in 1950 or 1960", "1960", values)
    assert not fact_answer_correct("born in 19600", "1960", values)


def test_kb_rejects_bad_settings():
    with pytest.raises(ValueError, match="values_per_attribute"):
        build_kb(0, 10, 500, 0.5, 0.5)
    with pytest.raises(ValueError, match="heldout_fraction"):
        build_kb(0, 10, 10, 1.5, 0.5)
