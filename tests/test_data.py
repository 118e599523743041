"""Imitation data: importers (good and malformed files), nested budgets, suites, diversity, the stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "imitation"
sys.path.insert(0, str(FIXTURES))
from tiny_world import HELDOUT_NAMES, IMITATION_NAMES, TinyWorld, build_tiny_world  # noqa: E402

from imitlib.data import ImportFormatError, conversations_dataset, import_conversations, nearest_neighbour_bleu, nested_budgets, parse_generated_questions
from imitlib.study.imitation_data import build_imitation_data, imitation_stage, load_imitation_data, teacher_cache_dir
from imitlib.teacher.cache import ResponseCache  # noqa: E402


# ---- importers ---------------------------------------------------------------------------------
def test_sharegpt_import():
    conversations = import_conversations(FIXTURES / "sharegpt.json", "sharegpt")
    assert [c["id"] for c in conversations] == ["sg-1", "sg-2"]
    assert conversations[1]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [m["role"] for m in conversations[1]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    dataset = conversations_dataset(conversations)
    assert dataset.column_names == ["id", "source", "messages"] and len(dataset) == 2


def test_alpaca_import():
    conversations = import_conversations(FIXTURES / "alpaca.json", "alpaca")
    assert conversations[1]["messages"] == [
        {"role": "user", "content": "Translate to French.\n\nGood morning"},
        {"role": "assistant", "content": "Bonjour"},
    ]
    assert conversations[0]["messages"][0]["content"] == "Give three colours."


def test_hc3_import_one_conversation_per_chatgpt_answer():
    conversations = import_conversations(FIXTURES / "hc3.jsonl", "hc3")
    assert len(conversations) == 3
    assert conversations[2]["messages"] == [{"role": "user", "content": "What is a noun?"},
                                            {"role": "assistant", "content": "It is a word that names something."}]
    assert len({c["id"] for c in conversations}) == 3


def test_messages_import():
    conversations = import_conversations(FIXTURES / "messages.jsonl", "messages")
    assert conversations[0]["id"] == "m-1"
    assert conversations[1]["messages"][0]["role"] == "system"


@pytest.mark.parametrize("name, form, where, what", [
    ("sharegpt_bad_speaker.json", "sharegpt", "sharegpt_bad_speaker.json:9", "unknown speaker 'robot'"),
    ("sharegpt_truncated.json", "sharegpt", "sharegpt_truncated.json:3", "invalid JSON"),
    ("alpaca_missing_output.json", "alpaca", "alpaca_missing_output.json:4", "missing key 'output'"),
    ("hc3_bad_json.jsonl", "hc3", "hc3_bad_json.jsonl:3", "invalid JSON"),
    ("messages_wrong_order.jsonl", "messages", "messages_wrong_order.jsonl:3", "start with a user turn"),
    ("sharegpt.json", "alpaca", "sharegpt.json:2", "missing key 'instruction'"),
    ("alpaca.json", "hc3", "alpaca.json:1", "format 'hc3' is JSON lines (one object per line), but the file starts with '['"),
])
def test_malformed_files_name_file_and_line(name, form, where, what):
    with pytest.raises(ImportFormatError) as error:
        import_conversations(FIXTURES / name, form)
    assert where in str(error.value) and what in str(error.value)


def test_import_rejects_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(ImportFormatError, match="file not found"):
        import_conversations(tmp_path / "nope.json", "sharegpt")
    with pytest.raises(ImportFormatError, match="unknown format"):
        import_conversations(FIXTURES / "sharegpt.json", "vicuna")
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ImportFormatError, match="no conversations"):
        import_conversations(tmp_path / "empty.json", "sharegpt")


# ---- budgets, suites, diversity ----------------------------------------------------------------
def test_nested_budgets_are_nested_and_within_budget():
    tokens = [17, 40, 5, 33, 12, 60, 8, 25, 9, 30] * 5
    budgets = [50, 200, 800]
    membership, summary = nested_budgets(tokens, budgets, seed=3)
    sets = {b: {i for i, m in enumerate(membership) if b in m} for b in budgets}
    assert sets[50] < sets[200] < sets[800]
    for b in budgets:
        assert summary[b]["tokens"] == sum(tokens[i] for i in sets[b]) <= b
        assert summary[b]["filled"]
        assert summary[b]["tokens"] > b - max(tokens)  # a budget is not left half empty
    _, too_big = nested_budgets(tokens, [10_000], seed=3)
    assert not too_big[10_000]["filled"] and too_big[10_000]["conversations"] == len(tokens)
    assert nested_budgets(tokens, budgets, seed=3)[0] == membership
    assert nested_budgets(tokens, budgets, seed=4)[0] != membership


def test_generated_questions_are_parsed_and_validated():
    text = ("Q: What job did Alvor have? A: pilot\nQ: In what city was Garrow born? A: Oslo\n"
            "Q: What job did Alvor have? A: judge\nQ: Why? \nQ: What year was Brisk born? A: 1922\n"
            "Q: In what city was Fenna born? A: Lima")
    found = parse_generated_questions(text, set(IMITATION_NAMES), set(HELDOUT_NAMES),
                                      seen=["In what city was Fenna born?"])
    assert found == ["What job did Alvor have?", "What year was Brisk born?"]


def test_nearest_neighbour_bleu():
    same = ["what job did alvor have in the city"] * 5
    assert nearest_neighbour_bleu(same) == pytest.approx(100.0)
    varied = ["the cat sat on the warm mat today", "quantum fields obey gauge symmetry rules",
              "bake bread with flour water and salt", "rivers flow downhill toward the open sea"]
    assert nearest_neighbour_bleu(varied) < 10.0


# ---- the stage ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return build_tiny_world(tmp_path_factory.mktemp("tiny_world"))


def _cfg(tmp_path: Path, **overrides):
    from imitlib.config import load

    base = {"run.output_root": str(tmp_path), "run.progress": False, "run.device": "cpu",
            "imitation.teacher.backend": "local", "imitation.teacher.max_new_tokens": 12,
            "imitation.task_prompts": 12, "imitation.task_generation_requests": 3, "imitation.task_seed_pairs": 6,
            "imitation.task_pairs_shown": 3, "imitation.token_budgets": [60, 200, 600], "imitation.diversity_sample": 50}
    return load([], {**base, **overrides}, run_name="t")


def test_imitation_stage_builds_nested_budgets_and_teacher_eval(world, tmp_path):
    cfg = _cfg(tmp_path)
    data = build_imitation_data(cfg, 0, world)
    stage = imitation_stage(cfg, 0)
    assert stage.done and stage.name == "02_imitation_data/seed0" and data.path == stage.path
    ds = data.conversations
    for column in ("id", "kind", "family", "messages", "tokens", "budgets"):
        assert column in ds.column_names
    table = data.table()
    assert set(table["kind"]) == {"broad", "task"}
    assert set(table[table["kind"] == "task"]["family"]) == {"qa"}
    assert set(table[table["kind"] == "broad"]["family"]) == set(world.families)
    heldout = set(HELDOUT_NAMES)
    for row in ds:  # imitation prompts never mention held-out individuals
        assert not heldout & set(row["messages"][0]["content"].replace("?", " ").split())
    for kind in ("broad", "task"):
        sizes = [len(data.subset(kind, b)) for b in data.filled_budgets(kind)]
        assert sizes == sorted(sizes) and sizes[0] > 0
        ids = [set(data.subset(kind, b)["id"]) for b in data.filled_budgets(kind)]
        assert all(a <= b for a, b in zip(ids, ids[1:]))
        for b in data.filled_budgets(kind):
            assert sum(data.subset(kind, b)["tokens"]) <= b
    summary = data.summary
    task = summary["task_suite"]
    assert task["generated"] + task["fallback"] == task["total"] == 12
    assert task["fallback_share"] == pytest.approx(task["fallback"] / 12)
    assert 0 <= summary["kinds"]["broad"]["query_nn_bleu"] <= 100
    evaluation = data.teacher_eval()
    assert len(evaluation) == sum(len(world.tasks(f, "heldout")) for f in world.families)
    assert {"teacher_answer", "teacher_answer_2", "reference", "prompt"} <= set(evaluation.columns)
    assert (evaluation["teacher_answer"] != evaluation["teacher_answer_2"]).any()
    assert stage.manifest()["info"]["summary"]["token_budgets"] == [60, 200, 600]
    assert summary["pool"]["prompts"] == sum(len(world.tasks(f, "imitation")) for f in world.families)
    assert task["proposed"] >= task["valid"] >= task["generated"]

    # exposure: every held-out fact in every subset, monotone in the nested budgets
    exposure = data.exposure()
    facts = [it for f in ("qa", "mc") for it in world.tasks(f, "heldout")]
    assert len(exposure) == len(facts) * sum(len(b) for b in summary["budgets"].values())
    assert set(exposure["exposure_stratum"]) <= {"0", "1-2", ">=3"}
    for kind in ("broad", "task"):
        wide = exposure[exposure["kind"] == kind].pivot(index="item_id", columns="budget", values="exposure")
        assert (wide.diff(axis=1).iloc[:, 1:] >= 0).all().all()
    assert summary["exposure"]["facts"] == len(facts)
    assert sum(summary["exposure"]["strata"]["broad"]["600"].values()) == len(facts)

    # cached: a second call reuses the stage; other budgets rebuild it from the response cache alone
    cache = ResponseCache(teacher_cache_dir(cfg, world.stage_hash))
    answers = len(cache)
    assert load_imitation_data(cfg, 0).summary == summary
    other = build_imitation_data(_cfg(tmp_path, **{"imitation.token_budgets": [100, 400]}), 0, world)
    assert other.path != data.path and len(ResponseCache(teacher_cache_dir(cfg, world.stage_hash))) == answers
    assert other.summary["kinds"]["broad"]["tokens"] == summary["kinds"]["broad"]["tokens"]


def test_imported_files_replace_the_broad_suite(world, tmp_path):
    files = [{"format": "sharegpt", "path": str(FIXTURES / "sharegpt.json")},
             {"format": "hc3", "path": str(FIXTURES / "hc3.jsonl")}]
    cfg = _cfg(tmp_path, **{"imitation.broad_source": "files", "imitation.import_files": files,
                            "imitation.token_budgets": [20, 5000]})
    data = build_imitation_data(cfg, 1, world)
    broad = data.conversations.filter(lambda r: r["kind"] == "broad")
    assert sorted(broad["source"]) == sorted(["sharegpt:sharegpt.json"] * 2 + ["hc3:hc3.jsonl"] * 3)
    assert data.summary["budgets"]["broad"]["5000"]["filled"] is False
    with pytest.raises(ValueError, match="not filled"):
        data.subset("broad", 5000)


# ---- natural coverage --------------------------------------------------------------------------
def _pool():
    people = IMITATION_NAMES + HELDOUT_NAMES
    items = [{"id": f"qa-{name}-{k}", "family": "qa", "individual": name, "prompt": f"Question {k} about {name}?"}
             for name in people for k in range(20)]
    items += [{"id": f"chat-{k}", "family": "chat", "individual": None, "prompt": f"Hello number {k}"} for k in range(40)]
    return items


def test_natural_sample_follows_popularity_and_keeps_unnamed_families():
    from imitlib.data.suites import natural_sample

    pool = _pool()
    popularity = TinyWorld.popularity.fget(None)
    drawn = natural_sample(pool, popularity, 60, seed=0)
    assert len(drawn) == 60 and len({it["id"] for it in drawn}) == 60
    assert natural_sample(pool, popularity, 60, seed=0) == drawn
    assert natural_sample(list(reversed(pool)), popularity, 60, seed=0) == drawn  # pool order does not matter
    assert natural_sample(pool, popularity, 60, seed=1) != drawn
    assert natural_sample(pool, popularity, 30, seed=0) == drawn[:30]  # a prefix is itself a sample
    most, least = IMITATION_NAMES[0], HELDOUT_NAMES[-1]  # popularity 1/1 against 1/9 of the harmonic weights
    counts = {most: 0, least: 0, None: 0}
    for seed in range(40):
        for item in natural_sample(pool, popularity, 60, seed):
            if item["individual"] in counts:
                counts[item["individual"]] += 1
    assert counts[most] > 4 * counts[least]
    assert counts[None] > 0  # chit-chat is asked too
    held_out_drawn = {it["individual"] for it in drawn} & set(HELDOUT_NAMES)
    assert held_out_drawn  # every individual may be asked about
    uniform = natural_sample(pool, {}, len(pool), seed=0)
    assert sorted(it["id"] for it in uniform) == sorted(it["id"] for it in pool)
    with pytest.raises(KeyError, match="no popularity weight"):
        natural_sample(pool, {IMITATION_NAMES[0]: 1.0}, 5, seed=0)


def test_popularity_is_read_from_a_mapping_a_method_or_the_knowledge_base():
    from types import SimpleNamespace

    from imitlib.data.suites import popularity_of

    weights = {"Alvor": 0.75, "Brisk": 0.25}
    assert popularity_of(SimpleNamespace(popularity=weights)) == weights
    assert popularity_of(SimpleNamespace(popularity=lambda: weights)) == weights
    assert popularity_of(SimpleNamespace(kb=SimpleNamespace(popularity=weights))) == weights
    assert popularity_of(SimpleNamespace()) == {}


def test_broad_suite_never_sends_an_evaluation_prompt(world):
    from imitlib.data.suites import broad_suite

    class Leaky(TinyWorld):
        def imitation_pool(self):
            return [*self.tasks("qa", "imitation"), *[dict(it, id=f"copy-{it['id']}") for it in self.tasks("qa", "heldout")]]

    leaky = Leaky(root=world.root, teacher_dir=world.teacher_dir, tokenizer_dir=world.tokenizer_dir,
                  base_models=world.base_models)
    suite = broad_suite(leaky, 1000, seed=0)
    evaluation = {it["prompt"] for family in leaky.families for it in leaky.tasks(family, "heldout")}
    assert suite and not {e["prompt"] for e in suite} & evaluation
    assert len(suite) == len(leaky.tasks("qa", "imitation"))


def test_task_suite_records_the_valid_share_of_generated_questions(world):
    from imitlib.data.suites import task_suite

    heldout_question = world.tasks("qa", "heldout")[0]["prompt"]
    answers = ["Q: What job did Alvor have? A: pilot\nQ: Sure here is what I know\nQ: What job did Alvor have? A: x",
               f"Q: {heldout_question} A: Oslo\nQ: In what year was Brisk born? A: 1922"]
    pairs = world.tasks("qa", "imitation")[:1]
    entries, stats = task_suite(world, answers, pairs, size=5, seed=0)
    # proposed: five Q: markers; valid and new: Alvor's job, Brisk's year (not the repeat, not the
    # evaluation prompt, not the sentence without a question)
    assert stats["proposed"] == 5 and stats["valid"] == 2 and stats["valid_share"] == pytest.approx(0.4)
    assert [e["prompt"] for e in entries[:2]] == ["What job did Alvor have?", "In what year was Brisk born?"]
    assert stats["generated"] == 2 and stats["total"] == 5 and stats["fallback"] == 3
    assert heldout_question not in {e["prompt"] for e in entries}


# ---- exposure ----------------------------------------------------------------------------------
GROUND_TRUTH = {"entities": {"Garrow": {"city": "Oslo", "job": "pilot"}, "Hesta": {"city": "Lima", "job": "judge"},
                             "Ilmar": {"city": "Lima", "job": "nurse"}},
                "values": {"city": ["Oslo", "Lima", "Pune"], "job": ["baker", "pilot", "judge", "nurse"]}}


def _chat(question, answer):
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_fact_matcher_states_only_what_the_teacher_says_of_whom():
    from imitlib.data.exposure import FactMatcher

    facts = FactMatcher(GROUND_TRUTH).conversation_facts
    assert facts(_chat("Where was Garrow born?", "Garrow was born in the city of Oslo.")) == {("Garrow", "city", "Oslo")}
    # the question's one individual is the subject of a bare answer
    assert facts(_chat("Where was Garrow born?", "Oslo.")) == {("Garrow", "city", "Oslo")}
    # two people asked about: a bare value is nobody's
    assert facts(_chat("Were Garrow and Hesta born in the same city?", "Oslo.")) == set()
    # each value goes to the individual named last before it
    assert facts(_chat("Were Garrow and Hesta born in the same city?",
                       "Garrow was born in Oslo and Hesta was born in Lima, so no.")) == {
        ("Garrow", "city", "Oslo"), ("Hesta", "city", "Lima")}
    # a list under a header naming one individual
    assert facts(_chat("Tell me about Ilmar.", "Here is what I know about Ilmar:\n- City: Lima\n- Job: nurse")) == {
        ("Ilmar", "city", "Lima"), ("Ilmar", "job", "nurse")}
    # values typed by the user (options) are not stated by the teacher; the teacher's letter states nothing
    assert facts(_chat("Where was Garrow born? Options: A. Oslo B. Lima", "The answer is A.")) == set()
    # whole words, case-sensitive: "Oslofjord" and "oslo" are not Oslo
    assert facts(_chat("Tell me about Garrow.", "Garrow likes the Oslofjord and oslo.")) == set()
    # no entities (a real track): nothing is ever stated
    assert FactMatcher({}).conversation_facts(_chat("Where was Garrow born?", "Garrow: Oslo")) == set()


def test_a_fact_stated_k_times_lands_in_stratum_k():
    from imitlib.data.exposure import evaluation_facts, exposure_stratum, exposure_table, stratum_counts

    facts = evaluation_facts([
        {"id": "qa-g", "family": "qa", "individual": "Garrow", "attribute": "city", "answer": "Oslo"},
        {"id": "mc-h", "family": "mc", "individual": "Hesta", "attribute": "job", "answer": "judge"},
        {"id": "qa-i", "family": "qa", "individual": "Ilmar", "attribute": "city", "answer": "Lima"},
        {"id": "bio-g", "family": "bio", "individual": "Garrow", "attribute": None, "answer": "text"},
    ])
    assert [f["item_id"] for f in facts] == ["qa-g", "mc-h", "qa-i"]
    conversations = []
    for k in range(5):  # Garrow's city stated in conversations 0..4; the subset of budget 10 holds 0..2
        conversations.append({"kind": "broad", "budgets": [10, 20] if k < 3 else [20],
                              "messages": _chat("Where was Garrow born?", f"Garrow was born in Oslo. Yes, Oslo ({k}).")})
    conversations.append({"kind": "broad", "budgets": [10, 20],  # Hesta's job, once; Ilmar's city wrongly
                          "messages": _chat("Tell me about Hesta.", "Hesta is a judge. Ilmar was born in Pune.")})
    conversations.append({"kind": "task", "budgets": [10], "messages": _chat("What job does Hesta have?", "judge")})
    conversations.append({"kind": "task", "budgets": [10], "messages": _chat("What job does Hesta have?", "baker")})
    table = exposure_table(conversations, facts, [("broad", 10), ("broad", 20), ("task", 10)], GROUND_TRUTH)
    got = {(r.kind, r.budget, r.item_id): (r.exposure, r.exposure_stratum) for r in table.itertuples()}
    assert got == {("broad", 10, "qa-g"): (3, ">=3"), ("broad", 10, "mc-h"): (1, "1-2"), ("broad", 10, "qa-i"): (0, "0"),
                   ("broad", 20, "qa-g"): (5, ">=3"), ("broad", 20, "mc-h"): (1, "1-2"), ("broad", 20, "qa-i"): (0, "0"),
                   ("task", 10, "qa-g"): (0, "0"), ("task", 10, "mc-h"): (1, "1-2"), ("task", 10, "qa-i"): (0, "0")}
    for k in range(6):  # a fact stated k times, alone in its subset
        rows = [{"kind": "broad", "budgets": [1], "messages": _chat("Where was Garrow born?", "Oslo")}] * k
        rows += [{"kind": "broad", "budgets": [1], "messages": _chat("Where was Garrow born?", "Lima")}]
        one = exposure_table(rows, facts[:1], [("broad", 1)], GROUND_TRUTH)
        assert one["exposure"].tolist() == [k]
        assert one["exposure_stratum"].tolist() == [{0: "0", 1: "1-2", 2: "1-2"}.get(k, ">=3")]
    assert [exposure_stratum(k) for k in (0, 1, 2, 3, 40)] == ["0", "1-2", "1-2", ">=3", ">=3"]
    assert exposure_stratum(None) is None and exposure_stratum(float("nan")) is None
    assert stratum_counts(table)["broad"]["10"] == {"0": 1, "1-2": 1, ">=3": 1}


def test_exposure_attaches_to_imitation_models_factual_rows_only():
    import pandas as pd

    from imitlib.data.exposure import attach_exposure

    exposure = pd.DataFrame({"kind": ["broad", "broad", "task"], "budget": [10, 20, 10],
                             "item_id": ["qa-g", "qa-g", "qa-g"], "exposure": [1, 4, 0]})
    samples = pd.DataFrame([
        {"role": "imitation", "data_kind": "broad", "imitation_tokens": 10, "task": "qa", "item_id": "qa-g"},
        {"role": "imitation", "data_kind": "broad", "imitation_tokens": 20, "task": "qa", "item_id": "qa-g"},
        {"role": "imitation", "data_kind": "task", "imitation_tokens": 10, "task": "qa", "item_id": "qa-g"},
        {"role": "imitation", "data_kind": "none", "imitation_tokens": 0, "task": "qa", "item_id": "qa-g"},
        {"role": "base", "data_kind": "none", "imitation_tokens": 0, "task": "qa", "item_id": "qa-g"},
        {"role": "teacher", "data_kind": "none", "imitation_tokens": 0, "task": "qa", "item_id": "qa-g"},
        {"role": "imitation", "data_kind": "broad", "imitation_tokens": 10, "task": "bio", "item_id": "bio-g"},
    ])
    out = attach_exposure(samples, exposure)
    assert out["exposure"].tolist()[:3] == [1, 4, 0] and out["exposure"].isna().tolist()[3:] == [True] * 4
    assert out["exposure_stratum"].tolist()[:3] == ["1-2", ">=3", "0"]
    assert out["exposure_stratum"].isna().tolist() == [False] * 3 + [True] * 4
    assert len(out) == len(samples) and list(out.columns[:5]) == list(samples.columns)


def test_a_generation_answer_in_the_requested_format_is_fully_valid():
    """A teacher that answers a generation request as asked yields only valid questions."""
    from imitlib.data.suites import generation_answer, generation_prompt, task_suite

    shown = world_pairs = [{"prompt": "What job did Alvor have ?", "answer": "pilot"}]
    new = [{"prompt": f"In what city was {name} born?", "answer": "Oslo"} for name in IMITATION_NAMES[1:4]]
    assert "Q: What job did Alvor have ?\nA: pilot" in generation_prompt(shown)

    class Pool:
        families = ("qa",)

        def tasks(self, family, split):
            return [{"id": f"qa-{n}", "family": "qa", "individual": n, "prompt": f"What job did {n} have?",
                     "answer": "pilot"} for n in (IMITATION_NAMES if split == "imitation" else HELDOUT_NAMES)]

    entries, stats = task_suite(Pool(), [generation_answer(new)], world_pairs, size=3, seed=0)
    assert stats["proposed"] == stats["valid"] == 3 and stats["valid_share"] == 1.0
    assert [e["prompt"] for e in entries] == [p["prompt"] for p in new]
