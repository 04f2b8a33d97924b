"""The report's protocols and methods: the protocol files in configs/protocols/, the method files in
configs/methods/, and `protocols.yaml` beside this module (what the report needs beyond them). The
bench scripts read the same definitions."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.report.common import CONFIGS
from lightning_nas.errors import ConfigError

METADATA = Path(__file__).with_name("protocols.yaml")


@dataclass(frozen=True)
class Method:
    name: str  # as the report shows it
    config: str  # configs/methods/<config>.yaml
    baseline: bool = False
    per_seed_fit: bool = False
    extra_budgets: tuple[int, ...] = ()


@dataclass(frozen=True)
class Protocol:
    name: str  # configs/protocols/<name>.yaml
    tables: tuple[str, ...]  # file names in the shared tables' folder
    target: str
    report: tuple[str, ...]
    partial: bool = False
    skipped: dict[str, str] = field(default_factory=dict)  # method -> why the report does not run it here

    @property
    def family(self) -> str:
        """The space family whose method files apply: the name up to its first "-"."""
        return self.name.split("-")[0]

    def configs(self, method: Method | str) -> list[Path]:
        """The files a search of `method` on this protocol composes, in order: the method, its file for
        this family where there is one, the protocol."""
        stem = method.config if isinstance(method, Method) else method
        family = CONFIGS / "methods" / self.family / f"{stem}.yaml"
        return [CONFIGS / "methods" / f"{stem}.yaml", *([family] if family.is_file() else []),
                CONFIGS / "protocols" / f"{self.name}.yaml"]

    def benchmark(self, shared: Path) -> list[str]:
        return [str(shared / table) for table in self.tables]

    def overrides(self, shared: Path) -> list[str]:
        """Search arguments that read this protocol's tables from `shared`."""
        return ["--data.init_args.benchmark", json.dumps(self.benchmark(shared))]


@functools.cache
def metadata() -> dict[str, Any]:
    return yaml.safe_load(METADATA.read_text())


def methods(multi_objective: bool = False) -> list[Method]:
    """The report's methods, or those of its searches of several objectives."""
    listed = metadata()["multi_objective"]["methods"] if multi_objective else metadata()["methods"]
    return [Method(name, spec["config"], spec.get("baseline", False), spec.get("per_seed_fit", False),
                   tuple(spec.get("extra_budgets", ()))) for name, spec in listed.items()]


def protocols(multi_objective: bool = False) -> list[Protocol]:
    """Every protocol file of one objective in the report's order, or (`multi_objective`) those that
    declare several, in the order of `multi_objective.protocols`."""
    files = {path.stem: path for path in sorted((CONFIGS / "protocols").glob("*.yaml"))}
    several = metadata()["multi_objective"]["protocols"]
    if multi_objective:
        return [_protocol(files[name]) for name in several if name in files]
    files = {name: path for name, path in files.items() if name not in several}
    order = [name for name in metadata()["order"] if name in files] + [n for n in files if n not in metadata()["order"]]
    return [_protocol(files[name]) for name in order]


def protocol(name: str) -> Protocol:
    known = {p.name: p for p in [*protocols(), *protocols(multi_objective=True)]}
    if name not in known:
        raise ConfigError(f"unknown protocol {name}; known: {', '.join(known)}")
    return known[name]


def _protocol(path: Path) -> Protocol:
    config = yaml.safe_load(path.read_text())
    data = config["data"]["init_args"]
    tables = data["benchmark"] if isinstance(data["benchmark"], list) else [data["benchmark"]]
    return Protocol(path.stem, tuple(Path(t).name for t in tables), data["target"], tuple(config["report"]),
                    partial=path.stem in metadata()["partial"], skipped=metadata()["skipped"].get(path.stem, {}))
