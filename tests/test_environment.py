"""environment.yml (conda) agrees with the exact pins of pyproject.toml and the lock file."""

import tomllib

import yaml

from imitlib.config import PROJECT_ROOT
from imitlib.environment import environment_yml, pinned_requirements


def test_every_dependency_is_pinned_exactly() -> None:
    for req in pinned_requirements(("dev", "real-small", "real-slice")):
        assert "==" in req and not any(op in req for op in (">", "<", "~", "!")), req


def test_environment_yml_matches_pyproject() -> None:
    committed = (PROJECT_ROOT / "environment.yml").read_text()
    assert committed == environment_yml(), "environment.yml is stale: run `make environment`"
    env = yaml.safe_load(committed)
    pip_deps = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip_deps) == sorted(pinned_requirements())
    assert "python=3.11" in env["dependencies"]


def test_lock_file_agrees_with_pyproject_pins() -> None:
    lock = {}
    for line in (PROJECT_ROOT / "requirements" / "lock.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            lock[name.lower().replace("_", "-")] = version.strip()
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, version = req.split("==")
        name = name.split("[")[0].lower().replace("_", "-")
        if name == "torch":
            continue  # installed first from the exact pin; not in the lock
        assert lock.get(name) == version, f"{name}: pyproject {version} vs lock {lock.get(name)}"
