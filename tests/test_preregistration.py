"""The pre-registrations agree with the confirm params, and confirm seeds are new."""

import re

import pytest
import yaml

from imitlib.config import PROJECT_ROOT, load

DESIGN_SEEDS = set(range(9))  # seeds built while the study was designed (0-2 default, 3-8 checks)
# (pre-registration, confirm params): world v2 (the record built from 2094fc5), world v3 (d73716a), world v4
# (9f32795), world v5 (fa0d6c3), world v6 (4c97db1), world v7 (c03f723), world v8
REGISTERED = {
    "confirm": (PROJECT_ROOT / "docs" / "PREREGISTRATION.md", PROJECT_ROOT / "params" / "confirm.yaml"),
    "confirm_v3": (PROJECT_ROOT / "docs" / "PREREGISTRATION_v3.md", PROJECT_ROOT / "params" / "confirm_v3.yaml"),
    "confirm_v4": (PROJECT_ROOT / "docs" / "PREREGISTRATION_v4.md", PROJECT_ROOT / "params" / "confirm_v4.yaml"),
    "confirm_v5": (PROJECT_ROOT / "docs" / "PREREGISTRATION_v5.md", PROJECT_ROOT / "params" / "confirm_v5.yaml"),
    "confirm_v6": (PROJECT_ROOT / "docs" / "PREREGISTRATION_v6.md", PROJECT_ROOT / "params" / "confirm_v6.yaml"),
    "confirm_v7": (PROJECT_ROOT / "docs" / "PREREGISTRATION_v7.md", PROJECT_ROOT / "params" / "confirm_v7.yaml"),
    "confirm_v8": (PROJECT_ROOT / "docs" / "PREREGISTRATION_v8.md", PROJECT_ROOT / "params" / "confirm_v8.yaml"),
}


def _registered(doc) -> dict:
    block = re.search(r"```yaml\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert block, f"{doc}: no yaml block with the registered claims and seeds"
    return yaml.safe_load(block.group(1))


def _config(params):
    return load([PROJECT_ROOT / "params" / "default.yaml", params], check_files=False)


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_confirm_has_ten_new_seeds(name) -> None:
    cfg = _config(REGISTERED[name][1])
    seeds = list(cfg.run.seeds)
    assert len(seeds) >= 10 and len(set(seeds)) == len(seeds)
    assert not set(seeds) & DESIGN_SEEDS
    others = [p for p in (PROJECT_ROOT / "params").glob("*.yaml") if p != REGISTERED[name][1]]
    for path in others:
        used = ((yaml.safe_load(path.read_text()) or {}).get("run") or {}).get("seeds") or []
        assert not set(seeds) & set(used), f"{path.name} also runs {name} seeds {sorted(set(seeds) & set(used))}"
    assert cfg.run_name == name


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_document_matches_the_config(name) -> None:
    doc, params = REGISTERED[name]
    registered = _registered(doc)
    cfg = _config(params)
    assert registered["confirm_seeds"] == list(cfg.run.seeds)
    resolved = [p.model_dump() for p in cfg.analysis.primary_claims]
    assert registered["primary_claims"] == resolved
    assert cfg.analysis.seed_interval == "t" and cfg.analysis.confidence == 0.95


@pytest.mark.parametrize("name", ["confirm_v3", "confirm_v4", "confirm_v5", "confirm_v6", "confirm_v7", "confirm_v8"])
def test_registers_the_world_it_runs(name) -> None:
    """The document names the world's convergence procedure as the config resolves it."""
    registered = _registered(REGISTERED[name][0])
    world = _config(REGISTERED[name][1]).world
    assert registered["world"] == {key: getattr(world, key) for key in registered["world"]}
    assert set(registered["world"]) >= {"pretrain_tokens", "convergence_replicates", "convergence_max_gain",
                                        "convergence_max_rounds", "convergence_replay_tokens"}
    if name not in ("confirm_v3", "confirm_v4"):  # from world v5 on, the stop rule's wordings are a setting
        assert "convergence_wordings" in registered["world"]


@pytest.mark.parametrize("name", ["confirm_v6", "confirm_v7", "confirm_v8"])
def test_registers_its_arithmetic(name):
    """From world v6 on the document names the arithmetic the config resolves (portable, one thread)."""
    registered = _registered(REGISTERED[name][0])
    run = _config(REGISTERED[name][1]).run
    assert registered["run"] == {key: getattr(run, key) for key in registered["run"]}
    assert registered["run"]["numerics"] == "portable" and registered["run"]["torch_threads"] == 1


def test_world_v7_registers_its_teacher_tuning():
    """World v7 differs from v6 in the teacher's tuning data: four more wordings per fact, registered."""
    registered = _registered(REGISTERED["confirm_v7"][0])["world"]
    assert registered["teacher_qa_extra_paraphrases"] == 4
    assert _config(REGISTERED["confirm_v6"][1]).world.teacher_qa_extra_paraphrases == 0


def test_world_v8_registers_its_list_rate():
    """World v8 differs from v7 in how often the teacher's qa tuning answers are lists, registered."""
    registered = _registered(REGISTERED["confirm_v8"][0])["world"]
    assert registered["teacher_qa_list_rate"] == 0.32 and registered["teacher_qa_extra_paraphrases"] == 4
    assert _config(REGISTERED["confirm_v7"][1]).world.teacher_qa_list_rate == 0.25
