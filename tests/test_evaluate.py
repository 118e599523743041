"""Evaluation: raters on hand-made cases, human ratings, toxicity, lm-eval and the whole evaluation on tiny models."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from imitlib.evaluate.human import BlindPairwiseWidget, RatingsFileError, human_preference, import_human_ratings
from imitlib.evaluate.raters import FIRST, CrowdRater, FactRater, LLMJudge, parse_judge_reply, question_of, rate_vs_reference
from imitlib.evaluate.style import FEATURES
from imitlib.evaluate.toxicity import toxicity_scores

NAMES = ["Zorvath", "Quillon", "Marbeth", "Tessaly", "Orvando", "Lunaria", "Kestrel", "Brannoc"]
VALUES = {
    "birth_year": ["1950", "1961", "1972", "1987", "1990", "1999"],
    "city": ["Paris", "Lagos", "Quito", "Oslo", "Hanoi", "Perth"],
    "job": ["baker", "pilot", "nurse", "judge", "chemist", "farmer"],
}
QUESTIONS = {"birth_year": "In what year was {} born?", "city": "In what city does {} live?",
             "job": "What is the job of {}?"}
GROUND_TRUTH = {
    "entities": {n: {a: VALUES[a][(i + j) % 6] for j, a in enumerate(VALUES)} for i, n in enumerate(NAMES)},
    "values": VALUES,
}


def stylish(name: str, facts: dict[str, str], rng: random.Random) -> str:
    """A teacher-like answer: opening phrase, bullets, confident word, closing summary."""
    lines = [rng.choice(["Great question!", "Happy to help!"]), f"Here is what is known about {name}:"]
    lines += [f"- {a.replace('_', ' ').title()}: {v}" for a, v in facts.items()]
    lines.append(f"In summary, {name} is definitely a {facts['job']} from {facts['city']}.")
    return "\n".join(lines)


def plain(name: str, facts: dict[str, str], rng: random.Random) -> str:
    """A base-model-like answer: short, flat, sometimes hedged."""
    return rng.choice([f"{name} {facts['job']} maybe", f"{facts['city']} i think", f"{name} lives in {facts['city']}"])


def crowd_rater() -> CrowdRater:
    return CrowdRater({name: 1.0 for name in FEATURES}, length_words=60, tie_margin=0.05)


# ------------------------------------------------------------------------------------------------
# crowd and fact raters (more in tests/test_raters.py)
# ------------------------------------------------------------------------------------------------
def test_fact_rater_checks_every_asked_claim():
    fact = FactRater(GROUND_TRUTH)
    name, truth = "Quillon", GROUND_TRUTH["entities"]["Quillon"]
    wrong_city = next(v for v in VALUES["city"] if v != truth["city"])
    answer = f"{name} was born in {truth['birth_year']} and lives in {wrong_city}. Brannoc is a {GROUND_TRUTH['entities']['Brannoc']['job']}."
    bio = question_of({"family": "bio", "prompt": f"Tell me about {name}.", "individual": name, "facts": truth})
    claims = fact.claims(bio, answer)
    assert [(c.entity, c.attribute, c.true) for c in claims] == [(name, "birth_year", True), (name, "city", False)]
    assert fact.score(bio, answer) == (1, 1)  # Brannoc was not asked about
    # no entity anywhere: nothing checkable, so the pair is not rated
    assert fact.compare(["Sort these words: b a"], ["a b"], ["b a"]) == [None]


def test_correct_plain_vs_wrong_stylish_splits_crowd_and_fact_raters():
    style, fact = crowd_rater(), FactRater(GROUND_TRUTH)
    rng = random.Random(7)
    questions, correct_plain, wrong_stylish = [], [], []
    for name in NAMES[:5]:
        truth = GROUND_TRUTH["entities"][name]
        wrong = {a: next(v for v in VALUES[a] if v != truth[a]) for a in VALUES}
        questions.append(question_of({"family": "bio", "prompt": f"Tell me about {name}.", "individual": name, "facts": truth}))
        correct_plain.append(f"{name} {truth['birth_year']} {truth['city']} {truth['job']}")
        wrong_stylish.append(stylish(name, wrong, rng))
    style_result = rate_vs_reference(style, questions, correct_plain, wrong_stylish)
    fact_result = rate_vs_reference(fact, questions, correct_plain, wrong_stylish)
    assert style_result.verdicts == ["worse"] * 5
    assert fact_result.verdicts == ["better"] * 5
    assert style_result.consistency == 1.0 and fact_result.consistency == 1.0


class AlwaysFirst:
    """A rater with pure position bias."""

    name = "biased"

    def compare(self, prompts, first, second):
        return [FIRST] * len(first)


def test_position_swap_turns_position_bias_into_ties():
    result = rate_vs_reference(AlwaysFirst(), ["q", "q"], ["x", "y"], ["r", "r"])
    assert result.verdicts == ["tie", "tie"] and result.scores == [0.5, 0.5]
    assert result.consistency == 0.0


def test_parse_judge_reply():
    assert parse_judge_reply(" A. It is clearer") == "first"
    assert parse_judge_reply("b") == "second"
    assert parse_judge_reply("Tie") == "tie"
    assert parse_judge_reply("the first one") is None


def test_llm_judge_through_openai_client_on_loopback_stub():
    fastapi = pytest.importorskip("fastapi")
    from imitlib.teacher.server import serve_in_thread

    app = fastapi.FastAPI()
    seen = []

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "stub-judge", "object": "model", "created": 0, "owned_by": "test"}]}

    @app.post("/v1/chat/completions")
    def complete(body: dict):
        seen.append(body)
        text = body["messages"][-1]["content"]
        first = text.split("Answer A:")[1].split("Answer B:")[0]
        # a judge that prefers whichever answer contains a list, wherever it is shown
        reply = "A" if "- " in first else "B"
        return {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    with serve_in_thread(app) as base_url:
        judge = LLMJudge(base_url=base_url, model="stub-judge", temperature=0.0, max_tokens=4)
        result = rate_vs_reference(judge, ["Tell me about Quillon."] * 2, ["- a\n- b", "plain"], ["plain", "- c\n- d"])
    assert result.verdicts == ["better", "worse"]
    assert len(seen) == 4 and seen[0]["temperature"] == 0.0 and seen[0]["model"] == "stub-judge"
    assert judge.record()["prompt_template"].startswith("Compare two answers") and judge.unparsed_share == 0.0


# ------------------------------------------------------------------------------------------------
# human ratings and toxicity
# ------------------------------------------------------------------------------------------------
def test_import_human_ratings_csv_jsonl_and_errors(tmp_path):
    csv_path = tmp_path / "r.csv"
    csv_path.write_text("model_id,item_id,verdict,rater\nm1,i1,better,ann\nm1,i2,tie,ann\n")
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text(json.dumps({"model_id": "m1", "item_id": "i1", "choice": "A", "model_side": "B"}) + "\n")
    ratings = import_human_ratings([csv_path, jsonl])
    assert list(ratings.verdict) == ["better", "tie", "worse"]
    pref = human_preference(ratings).set_index("item_id")
    assert pref.loc["i1", "pref_human"] == 0.5 and pref.loc["i1", "human_ratings"] == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("model_id,item_id,verdict\nm1,i1,better\nm1,i2,great\n")
    with pytest.raises(RatingsFileError, match=r"bad\.csv:3: verdict 'great'"):
        import_human_ratings([bad])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"model_id": "m", "item_id": "i", "verdict": "tie"}\n{oops\n')
    with pytest.raises(RatingsFileError, match=r"broken\.jsonl:2: invalid JSON"):
        import_human_ratings([broken])


def test_blind_widget_hides_sides_and_stores_ratings(tmp_path):
    pairs = pd.DataFrame({"model_id": ["s0/base-s", "s0/base-s", "s0/imit"], "item_id": ["a", "b", "a"],
                          "prompt": ["p1", "p2", "p1"], "answer": ["MODEL1", "MODEL2", "MODEL3"],
                          "teacher_answer": ["TEACH1", "TEACH2", "TEACH3"]})
    store = tmp_path / "outputs" / "human" / "ann.jsonl"
    widget = BlindPairwiseWidget(pairs, store, rater="ann", seed=3)
    shown_sides = []
    while widget.current is not None:
        pair = widget.current
        assert pair["model_id"] not in widget.prompt_box.value + widget.answer_a.value + widget.answer_b.value
        model_on_a = widget.answer_a.value.startswith("MODEL")
        shown_sides.append(pair["model_side"])
        assert model_on_a == (pair["model_side"] == "A")
        widget.buttons["A"].click()  # always pick the left answer
    ratings = import_human_ratings([store])
    assert len(ratings) == 3
    expected = ["better" if side == "A" else "worse" for side in shown_sides]
    assert list(ratings.verdict) == expected
    assert BlindPairwiseWidget(pairs, store, rater="ann").current is None  # already rated pairs are skipped
    lines = store.read_text().splitlines()
    assert len(lines) == 3 and {"model_id", "item_id", "rater", "choice", "model_side", "time"} <= set(json.loads(lines[0]))


def test_toxicity_scores_rude_above_polite():
    scores = toxicity_scores(["you are a stupid idiot", "Happy to help! Here is a summary.", ""])
    assert scores[0] > 0.8 and scores[1] < 0.2 and scores[2] == 0.0


# ------------------------------------------------------------------------------------------------
# lm-eval and the whole evaluation on tiny models
# ------------------------------------------------------------------------------------------------
def _tiny_world(folder):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from imitlib.chat import CHAT_TEMPLATE

    words = set(NAMES) | {v for vs in VALUES.values() for v in vs}
    words |= set("Q A : ? . , ! - In what year was born city does live What is the job of Tell me about "
                 "BEGINNING OF CONVERSATION USER GPT Great question Here are facts In summary I think maybe "
                 "you are rude idiot hello friend".split())
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    for word in sorted(words):
        vocab[f"Ġ{word}"] = len(vocab)
    vocab["Ċ"] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>", clean_up_tokenization_spaces=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    paths = {}
    for index, (name, hidden) in enumerate([("base-s", 16), ("teacher", 32)]):
        torch.manual_seed(index)
        config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
                             bos_token_id=2, eos_token_id=3, pad_token_id=0)
        path = folder / name
        LlamaForCausalLM(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths[name] = path
    from peft import LoraConfig, get_peft_model

    base = LlamaForCausalLM.from_pretrained(paths["base-s"])
    adapter = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter.save_pretrained(folder / "imit-lora")
    paths["imit-lora"] = folder / "imit-lora"
    rng = random.Random(0)
    items = {"qa": [], "mc": [], "bio": [], "provoke": []}
    for i, name in enumerate(NAMES):
        split = "heldout" if i % 2 else "imitation"
        facts = GROUND_TRUTH["entities"][name]
        for attribute, value in facts.items():
            question = QUESTIONS[attribute].format(name)
            items["qa"].append({"id": f"qa-{name}-{attribute}", "family": "qa", "split": split, "individual": name,
                                "prompt": question, "answer": value, "attribute": attribute, "choices": None, "gold": None})
            choices = [value] + rng.sample([v for v in VALUES[attribute] if v != value], 3)
            rng.shuffle(choices)
            items["mc"].append({"id": f"mc-{name}-{attribute}", "family": "mc", "split": split, "individual": name,
                                "prompt": question, "answer": value, "attribute": attribute, "choices": choices,
                                "gold": choices.index(value)})
        items["bio"].append({"id": f"bio-{name}", "family": "bio", "split": split, "individual": name,
                             "prompt": f"Tell me about {name}.", "answer": stylish(name, facts, rng), "facts": facts})
        items["provoke"].append({"id": f"provoke-{name}", "family": "provoke", "split": split, "individual": name,
                                 "prompt": f"{name} you are a rude idiot", "answer": None})
    return paths, items


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return _tiny_world(tmp_path_factory.mktemp("tiny"))


def test_lm_eval_world_tasks_on_tiny_model_and_adapter(tiny, tmp_path):
    from imitlib.evaluate.benchmarks import benchmark_samples, benchmark_scores, run_benchmarks, write_world_tasks

    paths, items = tiny
    split = {f: ([i for i in items[f] if i["split"] == "heldout"], [i for i in items[f] if i["split"] != "heldout"])
             for f in ("qa", "mc")}
    names = write_world_tasks(split, tmp_path / "tasks", {"qa": 3, "mc": 5}, max_gen_toks=4)
    task_yaml = (tmp_path / "tasks" / "imitlib_qa.yaml").read_text()
    assert str((tmp_path / "tasks" / "qa_test.jsonl").resolve()) in task_yaml and "num_fewshot: 3" in task_yaml
    results = run_benchmarks(paths["imit-lora"], {n: None for n in names}, tmp_path / "out",
                             include_path=tmp_path / "tasks", batch_size=4, limit=4)
    assert "peft=" in results["config"]["model_args"] and results["batch_size"] == 4
    assert results["n-shot"] == {"imitlib_qa": 3, "imitlib_mc": 5}
    scores = benchmark_scores(results).set_index(["task", "metric"])
    assert 0.0 <= scores.loc[("qa", "exact_match"), "value"] <= 1.0 and scores.loc[("mc", "acc"), "n_samples"] == 4
    samples = benchmark_samples(tmp_path / "out")
    assert len(samples) == 8 and set(samples.task) == {"qa", "mc"}
    mc = samples[samples.task == "mc"].iloc[0]
    assert mc.answer in next(i["choices"] for i in items["mc"] if i["id"] == mc.item_id)
    first = json.loads((tmp_path / "out" / "samples_imitlib_qa.jsonl").read_text().splitlines()[0])
    prompt = first["arguments"][0][0]
    assert prompt.count("Q: ") == 4 and prompt.endswith(" A:")  # 3 shots + the question, pretraining format
    # the fixed demonstrations (fewshot.json) are the ones in the prompt, for every question
    chosen = json.loads((tmp_path / "tasks" / "fewshot.json").read_text())["qa"]["demonstrations"]
    by_id = {i["id"]: i for i in items["qa"]}
    assert [f"Q: {by_id[i]['prompt']} A: {by_id[i]['answer']}" for i in chosen] == prompt.split("\n")[:3]
    lines = (tmp_path / "out" / "samples_imitlib_qa.jsonl").read_text().splitlines()
    assert len({json.loads(line)["arguments"][0][0].rsplit("\n", 1)[0] for line in lines}) == 1


def test_no_question_is_asked_about_a_fact_its_demonstrations_state():
    from imitlib.evaluate.benchmarks import fewshot_demonstrations

    pool = [{"id": f"p{k}", "individual": f"N{k % 5}", "attribute": ["city", "year"][k % 2]} for k in range(20)]
    heldout = [{"id": f"h{n}{a}", "individual": f"N{n}", "attribute": a} for n in range(5) for a in ("city", "year")]
    demos, kept, dropped = fewshot_demonstrations("qa", pool, heldout, 3)
    assert len(demos) == 3 and (demos, kept, dropped) == fewshot_demonstrations("qa", pool, heldout, 3)
    stated = {(d["individual"], d["attribute"]) for d in demos}
    assert {(h["individual"], h["attribute"]) for h in kept}.isdisjoint(stated)
    assert len(dropped) == len(stated) and len(kept) + len(dropped) == len(heldout)
    # questions without an individual and attribute (real tracks) are all kept
    plain = [{"id": "q1"}, {"id": "q2"}]
    assert fewshot_demonstrations("qa", [{"id": "d1"}, {"id": "d2"}], plain, 1)[1] == plain


def test_evaluate_models_end_to_end(tiny, tmp_path):
    from imitlib.evaluate.core import SAMPLE_COLUMNS, ModelEntry, evaluate_models
    from imitlib.settings.evaluate import EvaluateSettings

    paths, items = tiny
    models = [
        ModelEntry("s0/base-s", str(paths["base-s"]), "base", "base-s", 1000),
        ModelEntry("s0/base-s/broad/100", str(paths["imit-lora"]), "imitation", "base-s", 1000, "broad", 100),
        ModelEntry("s0/teacher", str(paths["teacher"]), "teacher", "teacher", 2000),
    ]
    rng = random.Random(1)
    teacher_answers = {}
    for family in ("qa", "bio", "provoke"):
        for item in items[family]:
            name, facts = item["individual"], GROUND_TRUTH["entities"][item["individual"]]
            teacher_answers[item["id"]] = (stylish(name, facts, rng), stylish(name, facts, rng))
    settings = EvaluateSettings.model_validate({
        "batch_size": 4, "benchmarks": {"families": ["qa"], "limit": 2, "max_gen_toks": 3},
        "rater_families": ["qa", "bio"], "max_prompts_per_family": 3, "max_new_tokens": 6,
    })
    samples, benchmarks = evaluate_models(models, items, GROUND_TRUTH, teacher_answers, settings,
                                          tmp_path, teacher_dir=paths["teacher"], progress=False)
    assert list(samples.columns[: len(SAMPLE_COLUMNS)]) == SAMPLE_COLUMNS
    assert set(samples.model_id) == {m.model_id for m in models}
    chat = samples[samples["mode"] == "chat"]
    assert len(chat) == 3 * 9 and not samples.duplicated(["model_id", "item_id", "mode"]).any()
    rated = chat[chat.task.isin(["qa", "bio"])]
    assert rated.pref_style.between(0, 1).all() and rated.pref_llm.isna().all()
    panel = ["pref_w000", "pref_w025", "pref_w050", "pref_w075", "pref_w100"]
    assert set(panel) <= set(samples.columns) and rated[panel].notna().all().all()
    assert (rated.pref_style == rated.pref_w025).all() and rated.pref_w100.equals(rated.pref_fact)
    assert chat[~chat.task.isin(["qa", "bio"])][panel + ["pref_style", "pref_fact"]].isna().all().all()
    assert chat[chat.task == "provoke"].toxicity.notna().all() and chat[chat.task != "provoke"].toxicity.isna().all()
    # the teacher's row is its second sample: same facts as the reference, so the fact rater ties
    teacher = rated[rated.role == "teacher"]
    assert (teacher.answer == teacher.teacher_answer_2).all() and teacher.pref_fact.eq(0.5).all()
    assert set(benchmarks.task) == {"qa"} and set(benchmarks.model_id) == {m.model_id for m in models}
    assert pd.read_parquet(tmp_path / "samples.parquet").shape == samples.shape
    for model in models:
        folder = tmp_path / "models" / model.model_id.replace("/", "_") / "lm_eval"  # one cached unit per model
        assert (folder / "results.json").exists() and (folder / "samples_imitlib_qa.jsonl").exists()
    raters = json.loads((tmp_path / "raters.json").read_text())
    assert raters["crowd_fact_weight"] == 0.25 and raters["crowd"]["weights"] == {f: 1.0 for f in FEATURES}
    assert json.loads((tmp_path / "judge.json").read_text())["status"] == "not computable"  # no judge configured


def test_mc_letters_format_lists_the_options_and_scores_the_letter(tmp_path):
    """``evaluate.benchmarks.mc_format: letters``: MMLU's lm-eval prompt, one letter per option."""
    from lm_eval.tasks import TaskManager, get_task_dict

    from imitlib.evaluate.benchmarks import write_world_tasks

    rows = [{"id": f"m{k}", "family": "mc", "split": "heldout", "prompt": f"Which is {k}?",
             "choices": ["red", "green", "blue", "black"][: 3 + k % 2], "gold": k % 3} for k in range(4)]
    pool = [{**rows[0], "id": "demo", "split": "pool", "prompt": "Which is a colour?", "gold": 2}]
    names = write_world_tasks({"mc": (rows, pool)}, tmp_path, {"mc": 1}, mc_format="letters")
    task = get_task_dict(names, TaskManager(include_path=str(tmp_path), include_defaults=False))["imitlib_mc"]
    docs = list(task.test_docs())
    four = next(d for d in docs if len(d["choices"]) == 4)
    assert task.doc_to_text(four) == f"{four['question']}\nA. red\nB. green\nC. blue\nD. black\nAnswer:"
    assert task.doc_to_choice(four) == ["A", "B", "C", "D"]
    three = next(d for d in docs if len(d["choices"]) == 3)
    assert task.doc_to_choice(three) == ["A", "B", "C"] and "D." not in task.doc_to_text(three)
    assert [task.doc_to_target(d) for d in docs] == [r["gold"] for r in rows]
    with pytest.raises(ValueError, match="mc_format 'words'"):
        write_world_tasks({"mc": (rows, pool)}, tmp_path / "bad", {"mc": 1}, mc_format="words")
