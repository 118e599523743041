"""A tiny world built end to end: cached stage, saved models reload with AutoModelForCausalLM."""

from __future__ import annotations

import json

import pytest
import torch

import imitlib.config
from imitlib.chat import CHAT_TEMPLATE
from imitlib.stages import StageError
from imitlib.study.world import build_world, load_world, world_stage

TINY = {
    "world.n_individuals": 8, "world.values_per_attribute": 8,
    "world.base_models": [
        {"name": "tiny-a", "hidden_size": 16, "layers": 1, "heads": 2, "intermediate_size": 32},
        {"name": "tiny-b", "hidden_size": 24, "layers": 1, "heads": 2, "intermediate_size": 48},
    ],
    "world.teacher_model": {"name": "teacher", "hidden_size": 48, "layers": 2, "heads": 2, "intermediate_size": 96},
    "world.seq_len": 64, "world.pretrain_tokens": 3000, "world.teacher_extra_tokens": 640,
    "world.convergence_replay_tokens": 640,
    "world.teacher_chat_epochs": 1.0, "world.teacher_qa_paraphrases": 1,
    "world.task_counts": {"mc": 4, "compare": 4, "skill": 4, "provoke": 3, "chitchat": 0},
    "world.pool_counts": {"mc": 6, "compare": 6, "skill": 6, "provoke": 3, "chitchat": 6},
    "world.teacher_task_counts": {"mc": 4, "compare": 4, "skill": 4, "provoke": 3, "chitchat": 4},
    "world.calibration_items_per_family": 2, "world.sample_chats": 2,
}


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return imitlib.config.load(["params/smoke.yaml"], {**TINY, "run.output_root": str(root)}, "tiny")


def test_load_world_before_building_names_the_notebook(tiny_cfg):
    with pytest.raises(StageError, match="run notebooks/01_world first"):
        load_world(tiny_cfg, 7)


def test_tiny_world_builds_caches_and_reloads(tiny_cfg):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from imitlib.generation import generate_chat, generate_texts

    torch.set_num_threads(1)
    stage = build_world(tiny_cfg, 0, progress=False)
    assert stage.done and stage.name == "01_world/seed0"
    assert build_world(tiny_cfg, 0).hash == stage.hash  # reused, not rebuilt
    assert world_stage(tiny_cfg, 1).hash != stage.hash
    world = load_world(tiny_cfg, 0)
    assert list(world.base_models) == ["tiny-a", "tiny-b"]
    assert world.base_params["tiny-a"] < world.base_params["tiny-b"]
    assert set(world.ground_truth["entities"]) == set(world.kb.names)
    heldout_qa = world.tasks("qa", "heldout")
    assert heldout_qa and all(item["split"] == "heldout" for item in heldout_qa)
    assert len(world.replay_texts(5, seed=1)) == 5
    assert world.replay_texts(3, seed=1) == world.replay_texts(3, seed=1)
    calibration = world.calibration["rows"]
    assert [row["model"] for row in calibration] == ["tiny-a", "tiny-b", "teacher"]
    for path in [*world.base_models.values(), world.teacher_dir]:
        model = AutoModelForCausalLM.from_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        assert type(model).__name__ == "LlamaForCausalLM"
        assert tokenizer.chat_template == CHAT_TEMPLATE
        assert tokenizer.eos_token_id is not None and tokenizer.pad_token_id is not None
        assert len(tokenizer) == model.config.vocab_size
        texts = generate_texts(model, tokenizer, [heldout_qa[0]["prompt"]], max_new_tokens=4)
        chats = generate_chat(model, tokenizer, [[{"role": "user", "content": heldout_qa[0]["prompt"]}]],
                              max_new_tokens=4)
        assert isinstance(texts[0], str) and isinstance(chats[0], str)
        new = model.generate(**tokenizer(["Q:"], return_tensors="pt", add_special_tokens=False),
                             max_new_tokens=3, min_new_tokens=3, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
        assert new.shape[1] >= 4
    from imitlib.world import report

    per_seed = report.seed_calibration([world])
    assert set(per_seed["model"]) == {"tiny-a", "tiny-b", "teacher"}
    bases = per_seed[per_seed["role"] == "base"]
    assert bases["fewshot_after_replay"].notna().all() and bases["replay_gain"].notna().all()
    checks = report.calibration_checks(report.calibration_table([world]), [world], 1e9)
    assert set(checks["seed"]) == {0, "all"}
    described = checks["target"].str.startswith(report.DESCRIBED_PREFIX)
    assert checks.loc[~described, "met"].notna().all() and checks.loc[described, "met"].isna().all()
    # the base-size ordering (C3's statistic) is described, never required; so are the arithmetic and the
    # teacher's margin over the best base (the target is the issue's: over the largest base)
    assert described.sum() == 4
    margin = checks[checks["target"].str.startswith("teacher chat accuracy on evaluation facts")]
    assert len(margin) == 1 and "the largest base's few-shot recall + 20 pts" in margin["target"].iloc[0]
    arithmetic = checks.loc[checks["target"].str.contains("arithmetic"), "measured"].tolist()
    assert len(arithmetic) == 1 and arithmetic[0].startswith("portable: torch AVX2 kernels, MKL branch COMPATIBLE")
    assert "fingerprint " in arithmetic[0]
    by_target = dict(zip(checks["target"], checks["met"]))
    assert by_target["no evaluation prompt text in the teacher's tuning data"]
    assert by_target["teacher pretrained on the same corpus for longer"]
    assert world.popularity() == world.kb.popularity
    manifest = json.loads((stage.path / "manifest.json").read_text())
    assert manifest["config_subset"]["_extra"] == {"seed": 0}
