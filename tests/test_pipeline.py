"""The papermill pipeline: parameters passed, order, --only/--from, failing cells, the report."""

import json
from pathlib import Path

import nbformat
import pytest

from imitlib import pipeline
from imitlib.pipeline import StageFailed, run, select


def _notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('params_files = ["params/default.yaml"]\noverrides = {}\nrun_name = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# test notebook"),
        params,
        nbformat.v4.new_code_cell("import imitlib.config\ncfg = imitlib.config.load(params_files, overrides, run_name)"),
        nbformat.v4.new_code_cell(body),
    ]
    nbformat.write(nb, path)
    return path


WRITE = (
    "import json, pathlib\n"
    "out = cfg.run_dir / (pathlib.Path.cwd().name + '_{name}.json')\n"
    "out.parent.mkdir(parents=True, exist_ok=True)\n"
    "out.write_text(json.dumps({{'params_files': params_files, 'overrides': overrides, 'run_name': cfg.run_name,"
    " 'seeds': cfg.run.seeds}}))"
)


@pytest.fixture()
def nb_dir(tmp_path: Path) -> Path:
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_first.ipynb", WRITE.format(name="first"))
    _notebook(d / "02_second.ipynb", WRITE.format(name="second"))
    return d


def test_select_by_name_prefix_and_from(nb_dir: Path) -> None:
    nbs = pipeline.notebooks(nb_dir)
    assert [p.stem for p in nbs] == ["01_first", "02_second"]
    assert [p.stem for p in select(nbs, only="02")] == ["02_second"]
    assert [p.stem for p in select(nbs, only="01_first")] == ["01_first"]
    assert [p.stem for p in select(nbs, start="second")] == ["02_second"]
    with pytest.raises(SystemExit, match="unknown stage"):
        select(nbs, only="07")


def test_run_passes_only_the_three_parameters(tmp_path: Path, nb_dir: Path) -> None:
    out = tmp_path / "out"
    cfg = run(["params/smoke.yaml"], {"run.output_root": str(out), "run.seeds": [5]}, notebook_dir=nb_dir)
    assert cfg.run_name == "smoke"
    written = json.loads((out / "smoke" / "notebooks_first.json").read_text())
    assert written["run_name"] == "smoke" and written["seeds"] == [5]
    assert written["params_files"][0].endswith("params/base.yaml")
    assert written["params_files"][-1].endswith("params/smoke.yaml")
    assert (out / "smoke" / "notebooks_second.json").exists()
    executed = out / "smoke" / "notebooks" / "01_first.ipynb"
    assert executed.exists()
    tags = [c.metadata.get("tags", []) for c in nbformat.read(executed, as_version=4).cells]
    assert ["injected-parameters"] in tags
    assert (out / "smoke" / "report.html").read_text().count("test notebook") == 2
    assert (out / "smoke" / "config.yaml").exists()


def test_only_and_run_name(tmp_path: Path, nb_dir: Path) -> None:
    out = tmp_path / "out"
    run(["params/smoke.yaml"], {"run.output_root": str(out)}, run_name="mine", only="02", notebook_dir=nb_dir,
        report=False)
    assert (out / "mine" / "notebooks_second.json").exists()
    assert not (out / "mine" / "notebooks_first.json").exists()


def test_failing_cell_stops_the_run_with_error_and_path(tmp_path: Path, nb_dir: Path) -> None:
    _notebook(nb_dir / "02_second.ipynb", "raise ValueError('broken on purpose')")
    _notebook(nb_dir / "03_third.ipynb", WRITE.format(name="third"))
    out = tmp_path / "out"
    with pytest.raises(StageFailed) as err:
        run(["params/smoke.yaml"], {"run.output_root": str(out)}, notebook_dir=nb_dir)
    message = str(err.value)
    assert "02_second.ipynb" in message and "broken on purpose" in message and "ValueError" in message
    assert str(out / "smoke" / "notebooks" / "02_second.ipynb") in message
    assert not (out / "smoke" / "notebooks_third.json").exists()


def test_cli_reports_bad_params_with_exit_code_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  nope: 1\n")
    assert pipeline.main(["check", str(bad)]) == 2
    assert "run.nope" in capsys.readouterr().err


COUNT = (
    "import pathlib, time\n"
    "(cfg.run_dir / 'tables').mkdir(parents=True, exist_ok=True)\n"
    "(cfg.run_dir / 'tables' / '{name}.txt').write_text('{name}')\n"
    "with open(cfg.run_dir.parent / 'count_{name}.txt', 'a') as f:\n"
    "    f.write('x')\n"
)


def test_up_to_date_notebooks_are_not_executed_again(tmp_path: Path) -> None:
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    _notebook(nb_dir / "01_first.ipynb", COUNT.format(name="first"))
    _notebook(nb_dir / "02_second.ipynb", COUNT.format(name="second"))
    out = tmp_path / "out"
    run_dir = out / "smoke"
    marker = run_dir / "stages" / "01_world" / "seed0" / "abc" / "COMPLETE"
    marker.parent.mkdir(parents=True)
    marker.write_text("abc\n")

    def go(**kwargs) -> tuple[int, int]:
        overrides = {"run.output_root": str(out), **kwargs.pop("overrides", {})}
        run(["params/smoke.yaml"], overrides, notebook_dir=nb_dir, **kwargs)
        return tuple(len((out / f"count_{n}.txt").read_text()) for n in ("first", "second"))

    assert go() == (1, 1)
    report_mtime = (run_dir / "report.html").stat().st_mtime_ns
    assert go() == (1, 1)  # nothing changed: both reused, report kept
    assert (run_dir / "report.html").stat().st_mtime_ns == report_mtime
    (run_dir / "tables" / "second.txt").write_text("edited")  # an output of 02 changed
    assert go() == (1, 2)
    (run_dir / "tables" / "first.txt").unlink()  # an output of 01 gone: 01 and everything after it
    assert go() == (2, 3)
    marker.write_text("abc\n")  # the stage was rebuilt (new marker)
    assert go() == (3, 4)
    assert go(overrides={"train.lr": 7e-4}) == (4, 5)  # other params
    assert go(overrides={"train.lr": 7e-4}) == (4, 5)
    assert go(overrides={"train.lr": 7e-4}, execute_all=True) == (5, 6)
    _notebook(nb_dir / "02_second.ipynb", COUNT.format(name="second") + "x = 1\n")  # the notebook changed
    assert go(overrides={"train.lr": 7e-4}) == (5, 7)
    # a failing notebook leaves no record, so the next run executes it again
    _notebook(nb_dir / "02_second.ipynb", COUNT.format(name="second") + "raise ValueError('no')\n")
    with pytest.raises(StageFailed):
        go(overrides={"train.lr": 7e-4})
    assert not (run_dir / "notebooks" / "02_second.done.json").exists()
    assert (run_dir / "notebooks" / "01_first.done.json").exists()


def test_the_report_carries_no_progress_bars(tmp_path: Path) -> None:
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    _notebook(nb_dir / "01_bars.ipynb",
              "import sys\nfrom tqdm import tqdm\n"
              "for _ in tqdm(range(3), desc='Loading checkpoint ' + 'shards', file=sys.stderr, mininterval=0): pass\n"
              "print('[01 seed 0] kept log line', file=sys.stderr)\nprint('stdout result')")
    cfg = run(["params/smoke.yaml"], {"run.output_root": str(tmp_path / "out")}, run_name="bars", notebook_dir=nb_dir)
    executed = nbformat.read(cfg.run_dir / "notebooks" / "01_bars.ipynb", as_version=4)
    assert "Loading checkpoint shards" in json.dumps(executed.cells[-1].outputs)  # the executed notebook keeps them
    html = (cfg.run_dir / "report.html").read_text()
    assert "Loading checkpoint shards" not in html and "it/s" not in html
    assert "kept log line" in html and "stdout result" in html
