"""Params: every file validates, strict errors name file and key, every key is documented."""

from pathlib import Path

import pytest
import yaml

from imitlib.config import BASE_PARAMS, PROJECT_ROOT, ConfigError, describe_keys, load

PARAMS_FILES = sorted((PROJECT_ROOT / "params").glob("*.yaml"))


@pytest.mark.parametrize("path", PARAMS_FILES, ids=lambda p: p.name)
def test_every_params_file_loads(path: Path) -> None:
    cfg = load([path])
    assert cfg.run_name == (path.stem if path != BASE_PARAMS else "base")
    assert cfg.params_files[0] == str(BASE_PARAMS)


def test_base_yaml_holds_every_schema_key_with_a_comment() -> None:
    text = BASE_PARAMS.read_text()
    data = yaml.safe_load(text)
    for key, _ in describe_keys():
        node = data
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"params/base.yaml lacks key {key}"
            node = node[part]
    # every leaf line carries a comment
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue  # comments, and items of a list whose key carries the comment
        key, _, value = stripped.partition(":")
        if value.strip() and not value.strip().startswith("#"):
            assert "#" in value, f"params/base.yaml:{lineno}: key {key!r} has no comment"


def test_other_params_files_only_override_known_keys() -> None:
    base = yaml.safe_load(BASE_PARAMS.read_text())

    def check(tree: dict, ref: dict, where: str) -> None:
        for key, value in tree.items():
            assert key in ref, f"{where}.{key} not in base.yaml"
            if isinstance(value, dict) and isinstance(ref[key], dict) and ref[key]:
                check(value, ref[key], f"{where}.{key}")

    for path in PARAMS_FILES:
        check(yaml.safe_load(path.read_text()) or {}, base, path.name)


def test_unknown_key_names_file_line_and_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  seeds: [0]\n  sedes: [1]\n")
    with pytest.raises(ConfigError) as err:
        load([bad])
    message = str(err.value)
    assert str(bad) in message and "run.sedes" in message and ":3" in message


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("trian:\n  method: full\n")
    with pytest.raises(ConfigError, match="trian"):
        load([bad])


def test_wrong_type_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  seeds: zero\n")
    with pytest.raises(ConfigError) as err:
        load([bad])
    assert str(bad) in str(err.value) and "run.seeds" in str(err.value)


def test_out_of_range_value(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("analysis:\n  confidence: 1.5\n")
    with pytest.raises(ConfigError, match="analysis.confidence"):
        load([bad])


def test_duplicate_seeds_rejected() -> None:
    with pytest.raises(ConfigError, match="run.seeds"):
        load(["params/smoke.yaml"], {"run.seeds": [1, 1]})


def test_output_root_may_not_escape_project() -> None:
    with pytest.raises(ConfigError, match="output_root"):
        load(["params/smoke.yaml"], ["run.output_root=../elsewhere"])


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  seeds: [0\n  force: true\n")
    with pytest.raises(ConfigError) as err:
        load([bad])
    assert str(bad) in str(err.value) and "line" in str(err.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(["params/does_not_exist.yaml"])


def test_deep_merge_and_overrides_in_order(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("run:\n  seeds: [3, 4]\n")
    b = tmp_path / "b.yaml"
    b.write_text("run:\n  progress: false\n")
    cfg = load([a, b], {"run.torch_threads": 1})
    assert cfg.run.seeds == [3, 4]          # from a, kept through b's partial override
    assert cfg.run.progress is False        # from b
    assert cfg.run.torch_threads == 1       # override
    assert cfg.run.output_root == "outputs"  # from base
    assert cfg.run_name == "b"
    cfg2 = load([a], ["run.seeds=[7]"], run_name="named")
    assert cfg2.run.seeds == [7] and cfg2.run_name == "named"


def test_override_syntax_error() -> None:
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        load([], ["run.seeds"])


def test_a_single_params_file_as_a_string() -> None:
    assert load("params/smoke.yaml").run_name == "smoke"
