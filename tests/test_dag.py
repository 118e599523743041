"""The DAG declaration: code-aware keys computed from the config and the source alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imitlib import dag
from imitlib.config import load

PACKAGE = Path(dag.__file__).resolve().parent


@pytest.fixture()
def package_copy(tmp_path):
    target = tmp_path / "imitlib"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _digests(package_dir: Path) -> dict[str, str]:
    dag.import_graph.cache_clear()
    dag.code_digest.cache_clear()
    return {spec.name: dag.code_digest(spec.module, package_dir) for spec in dag.STAGES}


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_the_declaration_is_in_upstream_order_and_names_real_modules():
    assert dag.order() == ["01_world", "02_imitation_data", "03_train", "04_evaluate", "05_analysis"]
    graph = dag.import_graph()
    for spec in dag.STAGES:
        assert spec.module in graph and (spec.unit_module or spec.module) in graph
        for key in spec.shape:  # shape keys exist in the schema and lie inside what the stage reads
            section, _, rest = key.partition(".")
            assert key.split(".")[0] in {r.split(".")[0] for r in spec.reads}
            node = load([]).model_dump()[section]
            for part in rest.split("."):
                assert part in node, f"{spec.name}: shape key {key} is not in the schema"
                node = node[part]


def test_changing_code_a_stage_imports_changes_its_key_and_only_its_key(package_copy):
    before = _digests(package_copy)
    _append(package_copy / "study" / "train.py", "\n\ndef _one_more_term(loss):\n    return loss\n")
    after = _digests(package_copy)
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["03_train"]  # 04 and 05 change through their upstream keys, not their code
    _append(package_copy / "train" / "loop.py", "\n# the training loop changed\n")
    again = _digests(package_copy)
    # the world's models are trained by the same loop
    assert sorted(name for name in after if after[name] != again[name]) == ["01_world", "03_train"]


def test_plots_docs_and_machinery_change_no_key(package_copy):
    before = _digests(package_copy)
    _append(package_copy / "plots.py", "\n# restyled\n")
    _append(package_copy / "stages.py", "\n# manifest wording\n")
    _append(package_copy / "config.py", "\n# loader wording\n")
    assert _digests(package_copy) == before


def test_a_data_file_beside_a_module_is_part_of_its_code(package_copy):
    before = _digests(package_copy)
    _append(package_copy / "evaluate" / "tasks" / "qa.yaml", "\n# template changed\n")
    after = _digests(package_copy)
    assert sorted(name for name in before if before[name] != after[name]) == ["04_evaluate"]


def test_only_the_real_world_key_holds_the_calibration_code(package_copy):
    world = dag.spec("01_world")

    def digests() -> tuple[str, str]:
        dag.import_graph.cache_clear()
        dag.code_digest.cache_clear()
        return (dag.stage_code_digest(world, False, package_copy), dag.stage_code_digest(world, True, package_copy))

    before = digests()
    assert before[0] != before[1]
    _append(package_copy / "evaluate" / "tasks" / "code.yaml", "\n# template changed\n")
    after = digests()
    assert after[0] == before[0] and after[1] != before[1]  # the real world benchmarks; the miniature does not
    assert "imitlib.evaluate.answers" in dag.code_closure("imitlib.real.calibration", package_copy)


def test_function_local_imports_are_part_of_the_closure():
    closure = dag.code_closure("imitlib.study.world")
    assert "imitlib.real.world" in closure  # imported inside build_world
    assert "imitlib.train.loop" in closure and "imitlib.plots" not in closure
    assert not any(m.startswith(("imitlib.study.imitation_data", "imitlib.study.train", "imitlib.evaluate")) for m in closure)


def test_keys_follow_params_and_upstream(tmp_path):
    base = {"run.output_root": str(tmp_path), "run.seeds": [0, 1]}
    cfg = load(["params/smoke.yaml"], base)
    keys = {name: dag.stage(cfg, name, 0).hash for name in dag.order()[:-1]}
    trained = load(["params/smoke.yaml"], {**base, "train.lr": 5e-3})
    changed = {name: dag.stage(trained, name, 0).hash != keys[name] for name in keys}
    assert changed == {"01_world": False, "02_imitation_data": False, "03_train": True, "04_evaluate": True}
    assert dag.stage(trained, "05_analysis").hash != dag.stage(cfg, "05_analysis").hash
    assert dag.stage(cfg, "01_world", 0).hash != dag.stage(cfg, "01_world", 1).hash
    assert dag.stage(cfg, "01_world", 0).path.parent.name == "seed0"
    with pytest.raises(ValueError, match="per seed"):
        dag.stage(cfg, "03_train")


def test_only_real_tracks_key_the_teacher_answers_on_the_rated_prompts(tmp_path):
    """Real tracks: 02 answers only the prompts 04 rates, so how many 04 rates is in 02's key there."""
    base = {"run.output_root": str(tmp_path)}
    for params, real in ((["params/smoke.yaml"], False), (["params/real_small.yaml"], True)):
        cfg = load(params, base)
        fewer = load(params, {**base, "evaluate.max_prompts_per_family": 7})
        assert (dag.stage(fewer, "02_imitation_data", 0).hash != dag.stage(cfg, "02_imitation_data", 0).hash) is real
        assert dag.stage(fewer, "01_world", 0).hash == dag.stage(cfg, "01_world", 0).hash


def test_unit_keys_leave_out_which_units_exist(tmp_path):
    base = {"run.output_root": str(tmp_path)}
    cfg = load(["params/smoke.yaml"], {**base, "train.token_budgets": [2000]})
    more = load(["params/smoke.yaml"], {**base, "train.token_budgets": [2000, 4000]})
    point = {"base_model": "base-s", "data_kind": "broad", "imitation_tokens": 2000}
    assert dag.stage(cfg, "03_train", 0).hash != dag.stage(more, "03_train", 0).hash  # the sweep changed
    run, same = (dag.unit(c, "03_train", 0, "base-s/broad/2000", point) for c in (cfg, more))
    assert run.hash == same.hash  # the run did not: adding a budget trains only the new run
    other = dag.unit(load(["params/smoke.yaml"], {**base, "train.lr": 5e-3}), "03_train", 0, "base-s/broad/2000", point)
    assert other.hash != run.hash
    judged = load(["params/smoke.yaml"], {**base, "evaluate.judge.max_tokens": 4})
    model = {"model": {"model_id": "s0/base-s"}}
    assert dag.unit(cfg, "04_evaluate", 0, "models/s0_base-s", model).hash == \
        dag.unit(judged, "04_evaluate", 0, "models/s0_base-s", model).hash  # a rater setting reuses answers
    assert dag.stage(cfg, "04_evaluate", 0).hash != dag.stage(judged, "04_evaluate", 0).hash  # and rates again


def test_the_arithmetic_s_definition_is_part_of_the_world_s_code(package_copy):
    """``run.numerics`` names the kernels; what ``portable`` means lives in numerics.py, so it is keyed too."""
    before = _digests(package_copy)
    _append(package_copy / "numerics.py", "\n# another portable branch\n")
    assert _digests(package_copy)["01_world"] != before["01_world"]
