"""Run the study's notebooks in order with papermill, and build the HTML report.

``python -m imitlib run params/default.yaml`` executes ``notebooks/01_world`` … ``05_analysis``
(those that exist), passing each only ``params_files``, ``overrides`` and ``run_name``. Executed
notebooks go to ``outputs/<run>/notebooks/``; the report to ``outputs/<run>/report.html``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from imitlib.config import PROJECT_ROOT, STAGE_NAMES, Config, ConfigError, load, parse_override
from imitlib.stages import atomic_path, atomic_write_text, write_run_config

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


def run(
    params_files: list[str],
    overrides: dict[str, Any] | None = None,
    run_name: str | None = None,
    only: str | None = None,
    start: str | None = None,
    force: bool = False,
    report: bool = True,
    notebook_dir: Path = NOTEBOOK_DIR,
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
    """
    overrides = dict(overrides or {})
    if force:
        overrides["run.force"] = True
    cfg = load(params_files, overrides, run_name=run_name)
    files = [str(Path(p)) for p in cfg.params_files]
    write_run_config(cfg)
    selected = select(notebooks(notebook_dir), only=only, start=start)
    if not selected:
        raise SystemExit(f"no notebooks found in {notebook_dir}")
    out_dir = cfg.run_dir / "notebooks"
    timings: dict[str, float] = {}
    for i, nb in enumerate(selected, 1):
        print(f"[{i}/{len(selected)}] {stage_of(nb)} → {out_dir / nb.name}", file=sys.stderr, flush=True)
        started = time.time()
        execute_notebook(nb, out_dir / nb.name, files, overrides, cfg.run_name, progress=cfg.run.progress)
        timings[stage_of(nb)] = time.time() - started
        print(f"      {stage_of(nb)} done in {timings[stage_of(nb)]:.1f} s", file=sys.stderr, flush=True)
    if report:
        path = build_report(cfg)
        print(f"report: {path}", file=sys.stderr)
    return cfg


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
            combined.cells.append(cell)
    exporter = HTMLExporter()
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(combined)
    return atomic_write_text(cfg.run_dir / "report.html", body)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def _overrides_from_cli(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        keys, value = parse_override(item)
        out[".".join(keys)] = value
    return out


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

    p_rep = sub.add_parser("report", help="rebuild outputs/<run>/report.html from executed notebooks")
    p_rep.add_argument("params", nargs="+")
    p_rep.add_argument("--run-name")

    p_chk = sub.add_parser("check", help="validate params files and print the resolved config")
    p_chk.add_argument("params", nargs="+")
    p_chk.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")

    sub.add_parser("environment", help="print environment.yml generated from pyproject.toml")

    from imitlib import cli_extra

    cli_extra.register(sub)

    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            run(args.params, _overrides_from_cli(args.set), args.run_name, args.only, args.start, args.force,
                report=not args.no_report)
        elif args.command == "report":
            cfg = load(args.params, run_name=args.run_name)
            print(build_report(cfg))
        elif args.command == "check":
            print(load(args.params, _overrides_from_cli(args.set)).to_yaml())
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
