"""Every notebook in notebooks/: committed clean, and executed with papermill on params/smoke.yaml.

The execution tests are parametrized over the folder, so a new notebook is covered by itself. They
share one output root and run in order, since each stage reads the ones before it.
"""

import ast
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from imitlib.config import PROJECT_ROOT, load
from imitlib.pipeline import execute_notebook, notebooks

NOTEBOOKS = notebooks()

# Files (globs, relative to outputs/<run>/) each notebook must write, besides its executed copy.
EXPECTED_OUTPUTS: dict[str, list[str]] = {
    "01_world": ["figures/01_*.png", "stages/01_world/**/COMPLETE"],
    "02_imitation_data": ["figures/02_*.png", "stages/02_imitation_data/**/COMPLETE"],
    "03_train": ["figures/03_*.png", "stages/03_train/**/COMPLETE"],
    "04_evaluate": ["figures/04_*.png", "stages/04_evaluate/**/COMPLETE"],
    "05_analysis": ["figures/05_*.png", "scorecard.md", "tables/*.csv"],
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name"), f"{path.name}: no kernelspec metadata"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    names = set()
    for node in ast.parse(params[0].source).body:
        assert isinstance(node, ast.Assign), f"{path.name}: parameters cell holds only assignments"
        ast.literal_eval(node.value)
        names |= {t.id for t in node.targets}
    assert names == {"params_files", "overrides", "run_name"}
    for cell in code:
        source = TransformerManager().transform_cell(cell.source)  # IPython magics → plain Python
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)), (
                f"{path.name}: function/class definitions belong in imitlib"
            )
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.fixture(scope="session")
def smoke_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smoke_outputs")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_smoke_params(path: Path, smoke_root: Path) -> None:
    overrides = {"run.output_root": str(smoke_root)}
    cfg = load(["params/smoke.yaml"], overrides)
    files = cfg.params_files
    out = cfg.run_dir / "notebooks" / path.name
    execute_notebook(path, out, files, overrides, cfg.run_name, progress=False)
    executed = nbformat.read(out, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, json.dumps(errors)[:2000]
    expected = EXPECTED_OUTPUTS.get(path.stem, [f"figures/{path.stem[:2]}_*.png"])
    for pattern in expected:
        matches = [m for m in cfg.run_dir.glob(pattern) if m.is_file() and m.stat().st_size > 0]
        assert matches, f"{path.stem} wrote nothing matching {pattern} under {cfg.run_dir}"
    if path.stem == "03_train":
        # the saved run table names each model folder relative to the run folder, not by this machine's path
        dirs = pd.read_csv(cfg.run_dir / "tables" / "03_train_runs.csv")["model_dir"]
        assert len(dirs) and not any(Path(d).is_absolute() for d in dirs), list(dirs)[:3]
        assert all((cfg.run_dir / d).is_dir() for d in dirs)


def test_notebooks_folder_is_the_study() -> None:
    assert all(p.parent == PROJECT_ROOT / "notebooks" for p in NOTEBOOKS)
    stems = [p.stem for p in NOTEBOOKS]
    assert stems == sorted(stems)
