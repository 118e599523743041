"""Params: every file validates, strict errors name file and key, every key is documented."""

import os
from pathlib import Path

import pytest
import yaml

from imitlib.config import BASE_PARAMS, EXTERNAL_ROOTS_ENV, PROJECT_ROOT, ConfigError, describe_keys, load

PARAMS_FILES = sorted((PROJECT_ROOT / "params").glob("*.yaml"))
IMPORTS = PROJECT_ROOT / "tests" / "fixtures" / "imitation"
BAD_DATA = PROJECT_ROOT / "tests" / "fixtures" / "reliability" / "bad_data"


def _import_files(cfg_files: list[Path]) -> list[dict]:
    """The import_files the params files list (the last file that sets them wins)."""
    found: list[dict] = []
    for path in cfg_files:
        found = (yaml.safe_load(path.read_text()) or {}).get("imitation", {}).get("import_files", found)
    return found


@pytest.mark.parametrize("path", PARAMS_FILES, ids=lambda p: p.name)
def test_every_params_file_loads(path: Path) -> None:
    listed = [item for item in _import_files([path]) if not (PROJECT_ROOT / item["path"]).exists()]
    overrides = {}
    if listed:
        # files a user brings (e.g. ShareGPT for the paper's setup) are checked at load time, naming each
        with pytest.raises(ConfigError) as err:
            load([path])
        for i, item in enumerate(_import_files([path])):
            if item in listed:
                assert f"imitation.import_files.{i}.path: {PROJECT_ROOT / item['path']}: file not found" in str(err.value)
                assert f"{path}:" in str(err.value)
        fixture = {"sharegpt": "sharegpt.json", "alpaca": "alpaca.json", "hc3": "hc3.jsonl", "messages": "messages.jsonl",
                   "discord": "discord.jsonl"}
        overrides["imitation.import_files"] = [{"format": item["format"], "path": str(IMPORTS / fixture[item["format"]])}
                                               for item in _import_files([path])]
    cfg = load([path], overrides)
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


@pytest.mark.parametrize("root", ["../elsewhere", "outputs/../notebooks", "outputs/../../x", "results", "outputsx/a",
                                  "/", "/etc/imitlib", str(PROJECT_ROOT / "notebooks"), str(PROJECT_ROOT) + "/outputs2",
                                  "{allowed}x/run", " "])
def test_output_root_outside_outputs_is_refused_naming_the_key(tmp_path: Path, monkeypatch, root: str) -> None:
    allowed = tmp_path / "allowed"  # an allowed external root that never contains the project (which may lie in /tmp)
    monkeypatch.setenv(EXTERNAL_ROOTS_ENV, str(allowed))
    root = root.format(allowed=allowed)
    params = tmp_path / "p.yaml"
    params.write_text(f"run:\n  seeds: [0]\n  output_root: '{root}'\n")
    with pytest.raises(ConfigError) as err:
        load([params])
    assert f"{params}:3: run.output_root" in str(err.value), str(err.value)
    if root.strip() and not root.startswith("/"):
        assert "escapes the project's outputs/ folder" in str(err.value)  # a relative root never may
        with pytest.raises(ConfigError, match="escapes"):
            load([params], {"run.allow_external_output_root": True})


def test_output_root_inside_outputs_or_opted_in(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(EXTERNAL_ROOTS_ENV, raising=False)
    for root in ("outputs", "outputs/study", "outputs/a/../b", str(PROJECT_ROOT / "outputs" / "abs")):
        accepted = load([], {"run.output_root": root}).output_root
        assert os.path.normpath(accepted) == os.path.normpath(PROJECT_ROOT / root)
    assert load([], {"run.output_root": "outputs/study"}).run_dir == PROJECT_ROOT / "outputs" / "study" / "base"
    outside = tmp_path / "runs"
    with pytest.raises(ConfigError) as err:
        load([], {"run.output_root": str(outside)})
    assert "overrides: run.output_root" in str(err.value) and "allow_external_output_root" in str(err.value)
    opted = load([], {"run.output_root": str(outside), "run.allow_external_output_root": True})
    assert opted.run_dir == outside / "base"
    monkeypatch.setenv(EXTERNAL_ROOTS_ENV, f"/nowhere{os.pathsep}{tmp_path}")
    assert load([], {"run.output_root": str(outside)}).run_dir == outside / "base"
    assert load([], {"run.output_root": str(tmp_path)}).run_dir == tmp_path / "base"
    with pytest.raises(ConfigError, match="outside the project's outputs/"):
        load([], {"run.output_root": str(tmp_path) + "-sibling"})  # a prefix of the name is not a parent


def test_unknown_key_in_a_list_item_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("world:\n  base_models:\n    - {name: a, hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32}\n"
                   "    - name: b\n      hidden_size: 16\n      hidden_sizee: 3\n      layers: 1\n      heads: 2\n"
                   "      intermediate_size: 32\n")
    with pytest.raises(ConfigError) as err:
        load([bad])
    assert f"{bad}:6: unknown key 'world.base_models.1.hidden_sizee'" in str(err.value), str(err.value)
    bad.write_text("world:\n  base_models:\n    - {name: a, hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32}\n"
                   "    - {name: b, hidden_size: 16, layers: 1, heads: 2, intermediate_size: 32}\n"
                   "    - {name: c, hidden_size: 16, layers: 0, heads: 2, intermediate_size: 32}\n")
    with pytest.raises(ConfigError) as err:
        load([bad])
    assert f"{bad}:5: world.base_models.2.layers" in str(err.value), str(err.value)


def test_an_odd_head_size_is_refused_when_the_params_load(tmp_path: Path) -> None:
    """Rotary embeddings rotate pairs: transformers refuses an odd head size only when the model is built,
    which for the teacher is minutes into a world build; the params say it at once, naming file and line."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("world:\n  teacher_model: {name: teacher, hidden_size: 84, layers: 4, heads: 4, intermediate_size: 224}\n")
    with pytest.raises(ConfigError) as err:
        load([bad])
    assert f"{bad}:2: world.teacher_model" in str(err.value), str(err.value)
    assert "84 / heads 4 = 21 per head" in str(err.value) and "even head size" in str(err.value)
    bad.write_text("world:\n  teacher_model: {name: teacher, hidden_size: 84, layers: 4, heads: 3, intermediate_size: 224}\n")
    assert load([bad]).world.teacher_model.heads == 3  # 28 per head


def _imports_yaml(items: list[tuple[str, str]], source: str = "files") -> str:
    lines = ["imitation:", f"  broad_source: {source}", "  import_files:"]
    for form, path in items:
        lines += [f"    - format: {form}", f"      path: {path}"]
    return "\n".join(lines) + "\n"


def test_import_files_are_checked_at_load_time(tmp_path: Path) -> None:
    """Loading checks that each file can be read at all; its format, record by record, is
    ``imitlib check``'s and the 02 stage's (tests/test_check.py)."""
    (tmp_path / "empty.jsonl").write_text("\n  \n")
    (tmp_path / "folder.json").mkdir()
    good = [("sharegpt", IMPORTS / "sharegpt.json"), ("alpaca", IMPORTS / "alpaca.json"), ("hc3", IMPORTS / "hc3.jsonl"),
            ("messages", "tests/fixtures/imitation/messages.jsonl")]
    bad = [("sharegpt", tmp_path / "missing.json", "file not found"),
           ("messages", BAD_DATA / "messages_latin1.jsonl", "line 2: not UTF-8 text"),
           ("hc3", tmp_path / "empty.jsonl", "file is empty"),
           ("sharegpt", tmp_path / "folder.json", "not a file"),
           ("hc3", "tests/fixtures/imitation/nowhere.jsonl", "file not found")]
    params = tmp_path / "imports.yaml"
    params.write_text(_imports_yaml(good))
    assert [f.path for f in load([params]).imitation.import_files] == [str(p) for _, p in good]
    params.write_text(_imports_yaml(good + [(form, path) for form, path, _ in bad]))
    with pytest.raises(ConfigError) as err:
        load([params])
    message = str(err.value)
    for i, (form, path, problem) in enumerate(bad, len(good)):
        full = path if Path(path).is_absolute() else PROJECT_ROOT / path
        line = 4 + 2 * i + 1  # the item's "path:" line
        assert f"{params}:{line}: imitation.import_files.{i}.path: {full}: {problem}" in message, message
    assert message.count("imitation.import_files.") == len(bad)  # the good files are not named
    # files a run does not read (broad_source: world) are not checked
    params.write_text(_imports_yaml([(form, path) for form, path, _ in bad], source="world"))
    assert load([params]).imitation.broad_source == "world"
    # the same check on an override names the override
    with pytest.raises(ConfigError, match=r"overrides: imitation.import_files.0.path: .*missing.json: file not found"):
        load([], {"imitation.broad_source": "files",
                  "imitation.import_files": [{"format": "sharegpt", "path": str(tmp_path / "missing.json")}]})


def test_human_ratings_files_are_checked_at_load_time(tmp_path: Path) -> None:
    (tmp_path / "ok.csv").write_text("model_id,item_id,verdict\ns0/base-s/broad/300,qa-1,better\n")
    (tmp_path / "ok.jsonl").write_text('{"model_id": "m", "item_id": "i", "verdict": "tie"}\n')
    (tmp_path / "no_item.csv").write_text("model_id,verdict\nm,better\n")
    (tmp_path / "array.json").write_text('[{"model_id": "m"}]\n')
    (tmp_path / "notes.txt").write_text("model_id,item_id\n")
    (tmp_path / "latin.csv").write_bytes("model_id,item_id,rater\nm,i,Ren\xe9e\n".encode("latin-1"))
    params = tmp_path / "ratings.yaml"
    ok = [tmp_path / "ok.csv", tmp_path / "ok.jsonl"]
    bad = [(tmp_path / "no_item.csv", "line 1: the CSV header lacks item_id"),
           (tmp_path / "array.json", "line 1: expected one JSON object per line"),
           (tmp_path / "notes.txt", "unsupported ratings file type '.txt'"),
           (tmp_path / "latin.csv", "line 2: not UTF-8 text"),
           (tmp_path / "gone.jsonl", "file not found")]
    params.write_text("evaluate:\n  human_ratings:\n" + "".join(f"    - {p}\n" for p in ok))
    assert load([params]).evaluate.human_ratings == [str(p) for p in ok]
    params.write_text("evaluate:\n  human_ratings:\n" + "".join(f"    - {p}\n" for p in ok + [b for b, _ in bad]))
    with pytest.raises(ConfigError) as err:
        load([params])
    for i, (path, problem) in enumerate(bad, len(ok)):
        assert f"{params}:{3 + i}: evaluate.human_ratings.{i}: {path}: {problem}" in str(err.value), str(err.value)
    assert str(err.value).count("evaluate.human_ratings.") == len(bad)


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


def test_free_form_dicts_stay_open_after_a_params_file_fills_them_and_an_empty_dict_empties_them(tmp_path):
    filled = tmp_path / "filled.yaml"
    filled.write_text("world:\n  real:\n    heldout_items: {qa: 10}\n")
    cfg = load([filled], {"world.real.heldout_items.mc": 5})
    assert cfg.world.real.heldout_items == {"qa": 10, "mc": 5}
    assert load([filled], ["world.real.heldout_items={}"]).world.real.heldout_items == {}
    with pytest.raises(ConfigError, match="unknown key 'world.real.heldout_itemz'"):
        load([filled], {"world.real.heldout_itemz": {"qa": 1}})


def _differences(written, schema, path=""):
    """Key paths where params/base.yaml and the schema's defaults differ (missing keys included)."""
    if isinstance(written, dict) and isinstance(schema, dict):
        out = []
        for key in sorted(set(written) | set(schema)):
            where = f"{path}.{key}" if path else key
            if key not in written:
                out.append(f"{where}: in the schema, not in params/base.yaml")
            elif key not in schema:
                out.append(f"{where}: in params/base.yaml, not in the schema")
            else:
                out.extend(_differences(written[key], schema[key], where))
        return out
    return [] if written == schema else [f"{path}: params/base.yaml says {written!r}, the schema {schema!r}"]


def test_base_yaml_keys_and_values_are_the_schema_and_its_defaults() -> None:
    from imitlib.config import Config

    written = yaml.safe_load(BASE_PARAMS.read_text())
    defaults = Config().model_dump(mode="json", exclude={"run_name", "params_files"})
    assert _differences(written, defaults) == []


def test_train_args_derive_from_the_train_schema() -> None:
    from imitlib.settings.train import LoopSettings, TrainSettings
    from imitlib.train import TrainArgs
    from imitlib.study.train import train_args_from

    loop_fields = set(LoopSettings.model_fields)
    assert set(TrainArgs.model_fields) - loop_fields == {"seed", "replay_batches"}  # the run's own, nothing copied
    defaults = TrainSettings().model_dump(include=loop_fields)
    assert TrainArgs().model_dump(include=loop_fields) == defaults  # no diverging defaults
    # every loop field of the params reaches the run's arguments
    changed = {"train.lr": 2e-3, "train.warmup_steps": 3, "train.epochs": 2, "train.log_every": 7,
               "train.checkpoint_every": 0, "train.adam_betas": [0.8, 0.99], "train.long_examples": "split",
               "train.keep_checkpoints": 3, "train.supervised_logits": False, "train.replay_every": 2}
    args = train_args_from(load([], changed), seed=4)
    assert args.seed == 4
    for key, value in changed.items():
        got = getattr(args, key.split(".")[1])
        assert (list(got) if isinstance(got, tuple) else got) == value, key
