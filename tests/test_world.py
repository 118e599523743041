"""The miniature world's pieces: knowledge base, item sets, corpus coverage, tokenizer, task items, style."""

from __future__ import annotations

import random
import re
import statistics

import pytest

import imitlib.config
from imitlib.chat import CHAT_TEMPLATE, render
from imitlib.world import FAMILIES, style_markers
from imitlib.study.world import make_kb, make_tasks
from imitlib.world.corpus import (PRETRAIN_ONLY_QUESTION_TEMPLATES, PRETRAIN_QA_TEMPLATES, QUESTION_TEMPLATES,
                                  TEMPLATE_ROLES, CorpusSampler, qa_document, qa_line, vocabulary_texts)
from imitlib.world.kb import ATTRIBUTES, build_kb
from imitlib.study.world import make_sampler
from imitlib.world.style import CLOSING_CUES, OPENINGS, has_teacher_style, marker_phrases, style_rates
from imitlib.world.tasks import (fact_answer_correct, make_items, teacher_response, teacher_tuning_conversations,
                                 teacher_tuning_data)
from imitlib.world.tokenizer import decode_exact, train_tokenizer


@pytest.fixture(scope="module")
def settings():
    return imitlib.config.load(["params/default.yaml"]).world


def _tuning(settings, seed):
    kb = make_kb(settings, seed)
    return kb, teacher_tuning_data(kb, settings.teacher_task_counts.model_dump(), seed, settings.teacher_qa_paraphrases,
                                   settings.task_counts.model_dump(), settings.teacher_qa_extra_paraphrases,
                                   settings.teacher_qa_list_rate)


def test_saved_kb_reloads_in_built_order_and_draws_the_same_corpus(settings, tmp_path):
    from imitlib.world.kb import KnowledgeBase

    built = make_kb(settings, 3)
    built.save(tmp_path / "kb.json")  # JSON with sorted keys: the individuals' order is not kept by the dict
    loaded = KnowledgeBase.load(tmp_path / "kb.json")
    assert loaded.names == built.names != sorted(built.names)
    draws = [[make_sampler(kb, settings, stream_seed=0).document() for _ in range(50)] for kb in (built, loaded)]
    assert draws[0] == draws[1]
    data = built.to_json()
    data["order"] = data["order"][1:]
    with pytest.raises(ValueError, match="order"):
        KnowledgeBase.from_json(data)


def test_kb_is_deterministic_per_seed(settings):
    first, again, other = make_kb(settings, 0), make_kb(settings, 0), make_kb(settings, 1)
    assert first.to_json() == again.to_json()
    assert first.individuals != other.individuals
    assert len(first.names) == settings.n_individuals == len(set(first.names))
    assert abs(sum(first.popularity.values()) - 1) < 1e-9
    assert max(first.popularity.values()) > 3 * min(first.popularity.values())  # a popularity skew
    values = {v for vs in first.values.values() for v in vs}
    assert not values & set(first.names)


def test_tuning_groups_are_stratified_and_cover_the_kb(settings):
    kb = build_kb(3, 24, 30, 0.5, 0.5)
    tuned, untuned = set(kb.names_in("tuning")), set(kb.names_in("untuned"))
    assert len(tuned) == 12 and tuned | untuned == set(kb.names) and not tuned & untuned
    ranked = sorted(kb.names, key=lambda n: -kb.popularity[n])
    assert tuned & set(ranked[:6]) and tuned & set(ranked[-6:])  # both ends of the popularity range
    assert set(make_kb(settings, 0).names_in("tuning")) == set(make_kb(settings, 0).names)  # default: every one


def test_evaluation_and_pool_cover_every_individual_with_disjoint_prompts(settings):
    kb = make_kb(settings, 3)
    tasks = make_tasks(kb, settings, 3)
    assert set(tasks) == set(FAMILIES)
    for family, items in tasks.items():
        heldout = [i for i in items if i["split"] == "heldout"]
        pool = [i for i in items if i["split"] == "imitation"]
        assert pool, family
        assert bool(heldout) == (family != "chitchat"), family
        assert not {i["prompt"] for i in heldout} & {i["prompt"] for i in pool}, family
        assert len({i["id"] for i in items}) == len(items)
    qa_eval = [i for i in tasks["qa"] if i["split"] == "heldout"]
    assert sorted((i["individual"], i["attribute"]) for i in qa_eval) == sorted(
        (n, a) for n in kb.names for a in ATTRIBUTES)  # every fact of every individual, once
    eval_templates = {t.format(name=n) for a in ATTRIBUTES for n in kb.names
                      for t in (QUESTION_TEMPLATES[a][i] for i in TEMPLATE_ROLES["heldout"])}
    assert {i["prompt"] for i in qa_eval} <= eval_templates
    for split in ("heldout", "imitation"):
        named = {i["individual"] for i in tasks["bio"] if i["split"] == split}
        assert named == set(kb.names), split
    pool_qa = [i for i in tasks["qa"] if i["split"] == "imitation"]
    assert len(pool_qa) == 2 * len(qa_eval)
    for item in tasks["qa"]:
        assert kb.individuals[item["individual"]][item["attribute"]] == item["answer"]
    for item in tasks["mc"]:
        assert item["choices"][item["gold"]] == item["answer"] and len(set(item["choices"])) == 4


# every design seed and every world v5-v8 confirm seed (prompts only, no model is built): in worlds v3-v4 a skill
# prompt of design seed 4's tuning data, and one of confirm seed 121's imitation pool, contained an evaluation prompt.
# The default params are world v8's: the teacher's tuning also asks each fact with 4 more wordings (from world v7).
@pytest.mark.parametrize("seed", [*range(9), *range(131, 171)])  # design seeds; confirm seeds of worlds v5-v8
def test_teacher_tuning_data_never_contains_an_evaluation_prompt(settings, seed):
    kb, tuning = _tuning(settings, seed)
    tasks = make_tasks(kb, settings, seed)
    eval_prompts = {i["prompt"] for items in tasks.values() for i in items if i["split"] == "heldout"}
    pool_prompts = {i["prompt"] for items in tasks.values() for i in items if i["split"] == "imitation"}
    user_prompts = [conversation[0]["content"] for _, conversation in tuning]
    assert not set(user_prompts) & eval_prompts
    eval_questions = {i.get("question") or i["prompt"] for items in tasks.values() for i in items if i["split"] == "heldout"}
    assert not set(user_prompts) & eval_questions  # not even the question of a multiple-choice item
    # the evaluation's wordings are taught, each with facts the evaluation does not ask that way
    eval_wordings = {t for a in ATTRIBUTES for t in (QUESTION_TEMPLATES[a][i] for i in TEMPLATE_ROLES["heldout"])}
    taught = {c[0]["content"].replace(i["individual"], "{name}") for i, c in tuning if i["family"] == "qa"}
    assert len(taught & eval_wordings) >= 8
    assert not set(user_prompts) & pool_prompts
    texts = [" ".join(m["content"] for m in conversation) for _, conversation in tuning]
    leaked = [p for p in eval_prompts if any(p in text for text in texts)]
    assert not leaked, leaked[:3]
    # nor inside an imitation-pool prompt (a list prompt must not be the prefix of a longer one)
    inside = [p for p in eval_prompts if any(p in q for q in pool_prompts)]
    assert not inside, inside[:3]
    # every fact is tuned (the default tunes every individual, with paraphrases of its own)
    tuned = {(i["individual"], i["attribute"]) for i, _ in tuning if i["family"] == "qa"}
    assert tuned == {(n, a) for n in kb.names for a in ATTRIBUTES}


def test_world_v7_asks_every_tuned_fact_with_four_more_wordings_than_world_v6(settings):
    assert settings.teacher_qa_extra_paraphrases == 4  # params/default.yaml: world v7
    kb = make_kb(settings, 0)
    counts, eval_counts = settings.teacher_task_counts.model_dump(), settings.task_counts.model_dump()
    v6 = [i for i, _ in teacher_tuning_data(kb, counts, 0, 2, eval_counts, 0) if i["family"] == "qa"]
    v7 = [i for i, _ in teacher_tuning_data(kb, counts, 0, 2, eval_counts, 4) if i["family"] == "qa"]
    assert len(v7) - len(v6) == 4 * len(kb.names) * len(ATTRIBUTES)
    added = {i["prompt"] for i in v7} - {i["prompt"] for i in v6}
    # e.g. the birth year and the birth city asked alike but for one word
    name = kb.names[0]
    assert {f"Can you say when {name} was born?", f"Can you say where {name} was born?"} <= added
    by_prompt = {i["prompt"]: i["answer"] for i in v7}
    assert by_prompt[f"Can you say when {name} was born?"] == kb.individuals[name]["birth_year"]
    assert by_prompt[f"Can you say where {name} was born?"] == kb.individuals[name]["birth_city"]
    # none of them is an evaluation, tuning-pair or pool wording
    asked = {t for a in ATTRIBUTES for t in QUESTION_TEMPLATES[a]}
    assert not {p.replace(i["individual"], "{name}") for i in v7 for p in [i["prompt"]] if p in added} & asked
    with pytest.raises(ValueError, match="teacher_qa_extra_paraphrases"):
        teacher_tuning_data(kb, counts, 0, 2, eval_counts, 5)
    # the older confirm params keep the world they were built with
    for name_ in ("confirm", "confirm_v3", "confirm_v4", "confirm_v5", "confirm_v6", "confirm_v7"):
        loaded = imitlib.config.load(["params/default.yaml", f"params/{name_}.yaml"]).world
        assert loaded.teacher_qa_extra_paraphrases == (4 if name_ == "confirm_v7" else 0), name_
        assert loaded.teacher_qa_list_rate == 0.25, name_


def test_world_v8_answers_more_qa_tuning_items_as_lists(settings):
    assert settings.teacher_qa_list_rate == 0.32  # params/default.yaml: world v8
    kb = make_kb(settings, 4)
    counts, eval_counts = settings.teacher_task_counts.model_dump(), settings.task_counts.model_dump()

    def qa_lists(rate):
        data = teacher_tuning_data(kb, counts, 4, 2, eval_counts, 4, rate)
        qa = [c[1]["content"] for i, c in data if i["family"] == "qa"]
        return sum(style_markers(a)["bullets"] for a in qa) / len(qa), [i["prompt"] for i, _ in data]

    low, prompts_low = qa_lists(0.25)
    high, prompts_high = qa_lists(0.32)
    assert prompts_low == prompts_high  # the same questions; only how they are answered changes
    assert 0.21 < low < 0.29 and 0.28 < high < 0.36 and high > low
    assert qa_lists(None)[0] == low  # no rate given: LIST_RATES' 0.25


def test_tuning_fraction_leaves_individuals_out_of_the_teacher_data(settings):
    kb = build_kb(0, 24, 30, 0.5, 0.5)
    tuning = teacher_tuning_data(kb, settings.teacher_task_counts.model_dump(), 0, 2, settings.task_counts.model_dump())
    untuned = set(kb.names_in("untuned"))
    pattern = re.compile(r"\b(" + "|".join(sorted(untuned)) + r")\b")
    assert not any(pattern.search(" ".join(m["content"] for m in c)) for _, c in tuning)


def test_corpus_contains_every_fact_and_no_evaluation_question(settings):
    kb = make_kb(settings, 0)
    sampler = make_sampler(kb, settings, stream_seed=0)
    docs = [sampler.document() for _ in range(3000)]
    assert {k for k, _ in docs} == {"bio", "qa", "filler", "rude"}
    bios = [text for kind, text in docs if kind == "bio"]
    for name, attribute, value in kb.facts():
        assert any(name in text and re.search(rf"\b{re.escape(value)}\b", text) for text in bios), (name, attribute)
    eval_questions = {i["prompt"] for i in make_items(kb, "qa", "heldout", {}, 0)}
    qa_text = "\n".join(text for kind, text in docs if kind == "qa")
    assert qa_text and not [q for q in eval_questions if q in qa_text]
    qa_names = set(kb.qa_names(settings.qa_individual_fraction))
    assert 0 < len(qa_names) < len(kb.names)
    assert not any(name in text for kind, text in docs if kind == "qa" for name in set(kb.names) - qa_names)


def test_pretraining_only_wordings_are_new_and_contain_no_evaluation_question():
    for attribute in ATTRIBUTES:
        extra = PRETRAIN_ONLY_QUESTION_TEMPLATES[attribute]
        assert len(extra) == len(set(extra)) == 4
        assert not set(extra) & set(QUESTION_TEMPLATES[attribute])
        for index in TEMPLATE_ROLES["heldout"]:
            question = QUESTION_TEMPLATES[attribute][index].replace("{name}", "").strip(" ?")
            assert not [t for t in extra if question in t], (attribute, question)


def test_extra_paraphrases_zero_draws_the_world_v3_corpus():
    def v3_qa_document(name, facts, rng, lines=3):  # the world v3 code, kept as the reference
        attributes = rng.sample(list(ATTRIBUTES), k=min(lines, len(ATTRIBUTES)))
        return "\n".join(qa_line(name, a, facts[a], template_index=rng.choice(PRETRAIN_QA_TEMPLATES)) for a in attributes)

    kb = build_kb(4, 60, 30, 0.5, 0.5)
    name = kb.names[0]
    rng_new, rng_old = random.Random(11), random.Random(11)
    docs = [qa_document(name, kb.individuals[name], rng_new) for _ in range(200)]
    assert docs == [v3_qa_document(name, kb.individuals[name], rng_old) for _ in range(200)]
    assert rng_new.random() == rng_old.random()  # the same stream afterwards


@pytest.mark.parametrize("extra", [2, 4])
def test_extra_paraphrases_appear_in_qa_lines_and_the_vocabulary(settings, extra):
    kb = make_kb(settings, 0)
    sampler = make_sampler(kb, settings.model_copy(update={"pretrain_qa_extra_paraphrases": extra}), stream_seed=0)
    qa_text = "\n".join(text for kind, text in (sampler.document() for _ in range(3000)) if kind == "qa")
    used = {t for ts in PRETRAIN_ONLY_QUESTION_TEMPLATES.values() for t in ts
            if re.search(re.escape(t).replace(re.escape("{name}"), r"\w+"), qa_text)}
    assert used == {t for ts in PRETRAIN_ONLY_QUESTION_TEMPLATES.values() for t in ts[:extra]}
    eval_questions = {i["prompt"] for i in make_items(kb, "qa", "heldout", {}, 0)}
    assert not [q for q in eval_questions if q in qa_text]
    vocabulary = " ".join(vocabulary_texts(kb, extra))
    words = {w for ts in PRETRAIN_ONLY_QUESTION_TEMPLATES.values() for t in ts[:extra] for w in re.findall(r"[A-Za-z]+", t)}
    assert not [w for w in words - {"name"} if not re.search(rf"\b{w}\b", vocabulary)]


def test_extra_paraphrases_out_of_range_is_refused_by_name(settings):
    kb = build_kb(0, 20, 30, 0.5, 0.5)
    with pytest.raises(ValueError, match="pretrain_qa_extra_paraphrases"):
        CorpusSampler(kb, 0.7, 0.15, 0.05, 0.5, seed=0, qa_extra_paraphrases=5)
    with pytest.raises(Exception, match="pretrain_qa_extra_paraphrases"):
        imitlib.config.load(["params/default.yaml"], overrides=["world.pretrain_qa_extra_paraphrases=7"])


def test_tokenizer_round_trip_and_one_token_per_word(settings, tmp_path):
    from transformers import AutoTokenizer

    kb = make_kb(settings, 0)
    sampler = CorpusSampler(kb, 0.7, 0.15, 0.05, 0.5, seed=5)
    conversations = teacher_tuning_conversations(kb, settings.teacher_task_counts.model_dump(), 0, 2,
                                                 settings.task_counts.model_dump())
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


def test_teacher_is_a_distinct_model_at_least_three_times_the_largest_base(settings):
    from imitlib.world.pretrain import count_parameters, make_model

    kb = make_kb(settings, 0)
    tokenizer = train_tokenizer(vocabulary_texts(kb) + [render(c) for c in teacher_tuning_conversations(
        kb, settings.teacher_task_counts.model_dump(), 0, 2, settings.task_counts.model_dump())])
    largest = max(count_parameters(make_model(size, tokenizer, 0)) for size in settings.base_models)
    assert count_parameters(make_model(settings.teacher_model, tokenizer, 0)) >= 3 * largest
    assert settings.teacher_extra_tokens > 0  # the same stream, read for longer


# every design seed (data only, no model): world v7 checked seeds 0-2 only, where its list share was 30.0-31.7%,
# and missed the 30% target in seeds 3, 5 and 8 (27.9-29.2%) and in 6 of its 10 confirm seeds
@pytest.mark.parametrize("seed", range(9))
def test_teacher_style_distribution_in_its_tuning_data(settings, seed):
    kb, tuning = _tuning(settings, seed)
    answers = [c[1]["content"] for _, c in tuning]
    families = [i["family"] for i, _ in tuning]
    rates = style_rates(answers, families)
    assert rates["list_share"] >= 0.30
    assert len(rates["list_families"]) >= 3
    assert rates["max_phrase_share"] <= 0.40, rates["max_phrase"]
    assert max(rates["markers"].values()) <= 0.40, rates["markers"]
    phrases = {p for a in answers for p in marker_phrases(a)}
    assert len({p for p in phrases if p.startswith("opening:")}) >= 4
    assert len({p for p in phrases if p.startswith("closing:")}) >= 4
    assert rates["styled_share"] >= 0.7  # most answers show some marker, none shows all of them always
    # length follows the question: long biographies are asked for, short ones are short
    words = {kind: [len(c[1]["content"].split()) for i, c in tuning
                    if i["family"] == "bio" and kind in c[0]["content"].lower()] for kind in ("short", "everything")}
    assert statistics.mean(words["everything"]) > statistics.mean(words["short"]) + 5
    assert statistics.pstdev([len(a.split()) for a in answers]) > 5
    for item, conversation in tuning:
        if item["family"] == "qa":
            assert fact_answer_correct(conversation[1]["content"], item["answer"], kb.values[item["attribute"]])
        if item["family"] == "provoke":
            assert style_markers(conversation[1]["content"])["refusal"]


def test_style_markers_detect_each_marker():
    plain = "Zorvath was born in 1987. The river rests near the garden."
    assert not any(style_markers(plain).values()) and not has_teacher_style(plain)
    assert style_markers("- a\n- b")["bullets"] and not style_markers("- a")["bullets"]
    assert style_markers("1. a\n2. b")["bullets"]
    for opening in OPENINGS:
        assert style_markers(f"{opening} It is 1987.")["opening"]
    for cue in CLOSING_CUES:
        text = f"It is 1987. {cue} the answer is 1987."
        assert style_markers(text)["summary"] and f"closing:{cue}" in marker_phrases(text)
    assert style_markers("I apologize, but no.")["refusal"]
    rng = random.Random(0)
    kb = make_kb(imitlib.config.load(["params/default.yaml"]).world, 0)
    item = make_items(kb, "qa", "tuning", {}, 0)[0]
    samples = {teacher_response(item, kb, rng) for _ in range(20)}
    assert len(samples) >= 5  # sampled, not one template


def test_fact_scoring_rejects_hedged_answers():
    values = ["1950", "1960", "1970"]
    assert fact_answer_correct("born in 1960.", "1960", values)
    assert not fact_answer_correct("born in 1950 or 1960", "1960", values)
    assert not fact_answer_correct("born in 19600", "1960", values)


def test_kb_rejects_bad_settings():
    with pytest.raises(ValueError, match="values_per_attribute"):
        build_kb(0, 10, 500, 0.5, 0.5)
    with pytest.raises(ValueError, match="tuning_fraction"):
        build_kb(0, 10, 10, 1.5, 0.5)


def test_pretraining_rows_carry_no_padding_after_a_batched_generation(settings, tmp_path):
    """Replay rows built after generation (the convergence probe, the teacher's replay) are the rows a
    fresh tokenizer gives: a padded batch call must not leave its padding in the corpus stream."""
    from transformers import AutoTokenizer

    from imitlib.generation import generate_texts
    from imitlib.world.pretrain import make_model, pretraining_examples

    kb = make_kb(settings, 0)
    train_tokenizer(vocabulary_texts(kb) + make_sampler(kb, settings, stream_seed=1).documents(300)).save_pretrained(str(tmp_path))
    fresh, used = AutoTokenizer.from_pretrained(str(tmp_path)), AutoTokenizer.from_pretrained(str(tmp_path))
    expected = pretraining_examples(make_sampler(kb, settings, stream_seed=3), fresh, 4096, settings.seq_len)
    model = make_model(settings.base_models[0], used, 0).eval()
    generate_texts(model, used, ["Q: Who employs", "Q: Where was " + kb.names[0] + " born? A:"], max_new_tokens=2)
    rows = pretraining_examples(make_sampler(kb, settings, stream_seed=3), used, 4096, settings.seq_len)
    assert rows == expected
    ids = [i for row in rows for i in row["input_ids"]]
    assert used.pad_token_id not in ids
    first = make_sampler(kb, settings, stream_seed=3).documents(1)[0]
    assert decode_exact(used, ids[1:ids.index(used.eos_token_id)]) == first
