"""The confirm run's pre-registration: its seeds are new, and the document states what the config runs."""

import re

import yaml

from imitlib.config import PROJECT_ROOT, load

DOC = PROJECT_ROOT / "docs" / "PREREGISTRATION.md"
CONFIRM = [PROJECT_ROOT / "params" / "default.yaml", PROJECT_ROOT / "params" / "confirm.yaml"]
DESIGN_SEEDS = set(range(8))  # seeds built while the study was designed (0-2 default, 3-7 checks)


def _registered() -> dict:
    block = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert block, f"{DOC}: no yaml block with the registered claims and seeds"
    return yaml.safe_load(block.group(1))


def test_confirm_has_ten_new_seeds() -> None:
    cfg = load(CONFIRM, check_files=False)
    seeds = list(cfg.run.seeds)
    assert len(seeds) >= 10 and len(set(seeds)) == len(seeds)
    assert not set(seeds) & DESIGN_SEEDS
    others = [p for p in (PROJECT_ROOT / "params").glob("*.yaml") if p.name != "confirm.yaml"]
    for path in others:
        used = ((yaml.safe_load(path.read_text()) or {}).get("run") or {}).get("seeds") or []
        assert not set(seeds) & set(used), f"{path.name} also runs confirm seeds {sorted(set(seeds) & set(used))}"
    assert cfg.run_name == "confirm"


def test_document_matches_the_config() -> None:
    registered = _registered()
    cfg = load(CONFIRM, check_files=False)
    assert registered["confirm_seeds"] == list(cfg.run.seeds)
    resolved = [p.model_dump() for p in cfg.analysis.primary_claims]
    assert registered["primary_claims"] == resolved
    assert cfg.analysis.seed_interval == "t" and cfg.analysis.confidence == 0.95
