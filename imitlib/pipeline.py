"""Run the study's notebooks in order with papermill, and build the HTML report.

``python -m imitlib run params/default.yaml`` executes ``notebooks/01_world`` … ``05_analysis``
(those that exist), passing each only ``params_files``, ``overrides`` and ``run_name``. Executed
notebooks go to ``outputs/<run>/notebooks/``; the report to ``outputs/<run>/report.html``.

A notebook is not executed again when nothing it depends on has changed since it last ran: the
resolved config, the notebook file, imitlib's source, the tracked package versions, every stage
folder that was complete when it finished (same ``COMPLETE`` marker), and the files it wrote (same
size and modification time). The record is ``outputs/<run>/notebooks/<name>.done.json``; once one
notebook executes, every later one executes too. ``--execute-all`` (or ``--force``) executes them all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from imitlib import cli_extra, numerics
from imitlib.config import PROJECT_ROOT, Config, ConfigError, load, overrides_from_cli
from imitlib.stages import COMPLETE_MARKER, atomic_write_json, atomic_write_text, package_versions, write_run_config

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"


class StageFailed(RuntimeError):
    """A notebook failed; the message carries the failing cell's error and the notebook's path."""


def notebooks(directory: Path = NOTEBOOK_DIR) -> list[Path]:
    """The study's notebooks in order (``NN_name.ipynb``)."""
    return sorted(p for p in directory.glob("[0-9][0-9]_*.ipynb"))


def stage_of(notebook: Path) -> str:
    return notebook.stem


def select(all_notebooks: list[Path], only: str | None = None, start: str | None = None) -> list[Path]:
    """Pick notebooks by ``--only`` / ``--from`` (a stage name like ``03_train`` or its prefix ``03``)."""
    names = [stage_of(n) for n in all_notebooks]

    def find(label: str) -> int:
        for i, name in enumerate(names):
            if name == label or name.split("_", 1)[0] == label or name.split("_", 1)[-1] == label:
                return i
        raise SystemExit(f"unknown stage {label!r}; stages: {', '.join(names)}")

    if only:
        return [all_notebooks[find(only)]]
    if start:
        return all_notebooks[find(start):]
    return all_notebooks


def execute_notebook(
    notebook: Path,
    output: Path,
    params_files: list[str],
    overrides: dict[str, Any] | None,
    run_name: str,
    progress: bool = True,
    kernel_name: str | None = None,
) -> Path:
    """Execute one notebook with papermill; raise :class:`StageFailed` with the cell error."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    env_before = os.environ.get("IMITLIB_ROOT")
    os.environ["IMITLIB_ROOT"] = str(PROJECT_ROOT)
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters={"params_files": list(params_files), "overrides": dict(overrides or {}), "run_name": run_name},
            cwd=str(notebook.parent),
            progress_bar=progress,
            kernel_name=kernel_name,
            log_output=False,
        )
    except PapermillExecutionError as exc:
        raise StageFailed(
            f"{notebook.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
            f"partly executed notebook: {output}"
        ) from None
    finally:
        if env_before is None:
            os.environ.pop("IMITLIB_ROOT", None)
        else:
            os.environ["IMITLIB_ROOT"] = env_before
    return output


# ---------------------------------------------------------------------------------------------
# Notebooks that are up to date
# ---------------------------------------------------------------------------------------------
def code_digest() -> str:
    """sha256 over imitlib's source files (code, params schema, lm-eval task files) and the tracked
    package versions: the code every notebook runs."""
    digest = hashlib.sha256(json.dumps(package_versions(), sort_keys=True).encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".yaml", ".json", ".jinja") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def notebook_key(cfg: Config, notebook: Path, code: str | None = None) -> str:
    """What an executed notebook depends on besides the stage folders and its own outputs."""
    payload = {
        "config": cfg.model_dump(mode="json"),
        "notebook": hashlib.sha256(notebook.read_bytes()).hexdigest(),
        "code": code or code_digest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _stat(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


def _snapshot(cfg: Config, since_ns: int, executed: Path) -> dict[str, dict[str, list[int]]]:
    """Stage markers complete now, and the run's files written since ``since_ns`` (the notebook's outputs)."""
    run_dir = cfg.run_dir
    stages = {str(m.relative_to(run_dir)): _stat(m) for m in (run_dir / "stages").rglob(COMPLETE_MARKER)}
    written = {}
    for top in run_dir.iterdir():  # stage folders (models, checkpoints) and the teacher cache are not walked
        if top.name in ("stages", "cache"):
            continue
        for path in [top] if top.is_file() else top.rglob("*"):
            if path.is_file() and not path.name.endswith(".done.json") and (
                    path == executed or path.stat().st_mtime_ns >= since_ns):
                written[str(path.relative_to(run_dir))] = _stat(path)
    return {"stages": stages, "written": written}


def done_record(output: Path) -> Path:
    return output.with_name(output.stem + ".done.json")


def up_to_date(cfg: Config, output: Path, key: str) -> bool:
    """True when ``output`` was executed with this key and every stage and file it saw is unchanged."""
    record_path = done_record(output)
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return False
    if record.get("key") != key or not output.exists():
        return False
    for group in ("stages", "written"):
        for rel, seen in record.get(group, {}).items():
            path = cfg.run_dir / rel
            if not path.is_file() or _stat(path) != seen:
                return False
    return True


def run(
    params_files: list[str],
    overrides: dict[str, Any] | None = None,
    run_name: str | None = None,
    only: str | None = None,
    start: str | None = None,
    force: bool = False,
    report: bool = True,
    notebook_dir: Path = NOTEBOOK_DIR,
    execute_all: bool = False,
) -> Config:
    """Execute the pipeline; returns the resolved config.

    Args:
        params_files: params files (``params/base.yaml`` is always loaded first).
        overrides: dotted-key overrides passed to every notebook.
        run_name: output folder name (default: the last params file's stem).
        only: run just this stage (``03_train`` or ``03``).
        start: run from this stage on.
        force: rebuild the cached stages of the selected notebooks.
        report: write ``outputs/<run>/report.html`` at the end.
        notebook_dir: where the study's notebooks are.
        execute_all: execute every selected notebook, even those that are up to date.
    """
    overrides = dict(overrides or {})
    if force:
        overrides["run.force"] = True
    cfg = load(params_files, overrides, run_name=run_name)
    numerics.pin_environment(cfg.run.numerics)  # the notebooks' kernels inherit it
    files = [str(Path(p)) for p in cfg.params_files]
    write_run_config(cfg)
    selected = select(notebooks(notebook_dir), only=only, start=start)
    if not selected:
        raise SystemExit(f"no notebooks found in {notebook_dir}")
    out_dir = cfg.run_dir / "notebooks"
    timings: dict[str, float] = {}
    code = code_digest()
    executing = execute_all or force
    any_executed = False
    for i, nb in enumerate(selected, 1):
        output = out_dir / nb.name
        key = notebook_key(cfg, nb, code)
        if not executing and up_to_date(cfg, output, key):
            print(f"[{i}/{len(selected)}] {stage_of(nb)} is up to date: {output} "
                  "(nothing it depends on changed; --execute-all runs it again)", file=sys.stderr, flush=True)
            continue
        executing = True  # everything downstream of an executed notebook executes too
        print(f"[{i}/{len(selected)}] {stage_of(nb)} → {output}", file=sys.stderr, flush=True)
        done_record(output).unlink(missing_ok=True)
        started, started_ns = time.time(), time.time_ns()
        execute_notebook(nb, output, files, overrides, cfg.run_name, progress=cfg.run.progress)
        atomic_write_json(done_record(output), {"key": key, **_snapshot(cfg, started_ns, output)})
        any_executed = True
        timings[stage_of(nb)] = time.time() - started
        print(f"      {stage_of(nb)} done in {timings[stage_of(nb)]:.1f} s", file=sys.stderr, flush=True)
    if report and not any_executed and (cfg.run_dir / "report.html").exists():
        report = False
    if report:
        path = build_report(cfg)
        print(f"report: {path}", file=sys.stderr)
    return cfg


# a tqdm bar as it prints: "desc:  40%|####      | 2/5 [00:01<00:02,  1.5it/s]" (no total: "7it [00:01, 5.1it/s]")
PROGRESS_BAR = re.compile(r"^.*?(\d+%\|[^|]*\|\s*\S+/\S+|\d+[A-Za-z/]*)\s+\[\d+:\d\d[^\]]*\]$")
WIDGET = "application/vnd.jupyter.widget-view+json"


def _is_bar(text: str) -> bool:
    return bool(PROGRESS_BAR.match(text.strip()))


def without_progress_bars(outputs: list) -> list:
    """A code cell's outputs without progress bars (for the report): stderr lines that are bars, with
    every ``\\r`` redraw, are dropped, other stderr lines kept; progress widgets are dropped."""
    kept = []
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            lines = []
            for line in output.get("text", "").split("\n"):
                parts = [part for part in line.split("\r") if part.strip()]
                rest = [part for part in parts if not _is_bar(part)]
                if parts and not rest:
                    continue
                lines.append(rest[-1] if rest else line)
            text = "\n".join(lines)
            if not text.strip():
                continue
            output["text"] = text
        elif output.get("output_type") == "display_data" and WIDGET in output.get("data", {}) \
                and _is_bar(str(output["data"].get("text/plain", ""))):
            continue
        kept.append(output)
    return kept


def build_report(cfg: Config) -> Path:
    """Concatenate the executed notebooks of a run into ``outputs/<run>/report.html``."""
    import nbformat
    from nbconvert import HTMLExporter

    executed = notebooks(cfg.run_dir / "notebooks")
    if not executed:
        raise SystemExit(f"no executed notebooks under {cfg.run_dir / 'notebooks'}; run the pipeline first")
    combined = nbformat.v4.new_notebook()
    combined.metadata = nbformat.read(executed[0], as_version=4).metadata
    combined.cells.append(nbformat.v4.new_markdown_cell(
        f"# imitlib report: `{cfg.run_name}`\n\nExecuted notebooks: "
        + ", ".join(f"`{p.stem}`" for p in executed)
    ))
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if "parameters" in cell.metadata.get("tags", []) or "injected-parameters" in cell.metadata.get("tags", []):
                continue
            if cell.cell_type == "code":
                cell.outputs = without_progress_bars(cell.get("outputs", []))
            combined.cells.append(cell)
    exporter = HTMLExporter()
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(combined)
    return atomic_write_text(cfg.run_dir / "report.html", body)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imitlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="execute the notebooks in order with papermill")
    p_run.add_argument("params", nargs="+", help="params files (params/base.yaml is always loaded first)")
    p_run.add_argument("--only", help="run just this stage (e.g. 03_train)")
    p_run.add_argument("--from", dest="start", help="run from this stage on")
    p_run.add_argument("--force", action="store_true", help="rebuild cached stages of the selected notebooks")
    p_run.add_argument("--run-name", help="output folder under outputs/ (default: last params file's name)")
    p_run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a param")
    p_run.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p_run.add_argument("--execute-all", action="store_true",
                       help="execute every selected notebook, also those that are up to date (stages stay cached)")

    p_rep = sub.add_parser("report", help="rebuild outputs/<run>/report.html from executed notebooks")
    p_rep.add_argument("params", nargs="+")
    p_rep.add_argument("--run-name")

    p_chk = sub.add_parser("check", help="validate params files and every record of the import files they name; "
                                         "print the resolved config")
    p_chk.add_argument("params", nargs="+")
    p_chk.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    sub.add_parser("environment", help="print environment.yml generated from pyproject.toml")

    cli_extra.register(sub)

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run(args.params, overrides_from_cli(args.set), args.run_name, args.only, args.start, args.force,
                report=not args.no_report, execute_all=args.execute_all)
        elif args.command == "report":
            cfg = load(args.params, run_name=args.run_name)
            print(build_report(cfg))
        elif args.command == "check":
            from imitlib.data.importers import check_config_imports  # reads every record of every import file

            cfg = load(args.params, overrides_from_cli(args.set))
            print(cfg.to_yaml())
            text, ok = check_config_imports(cfg)
            if text:
                print(text, file=sys.stdout if ok else sys.stderr)
            if not ok:
                return 2
        elif args.command == "environment":
            from imitlib.environment import environment_yml

            sys.stdout.write(environment_yml())
        else:
            return cli_extra.dispatch(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StageFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
