"""Finding user code by name: class paths, entry points and `{class_path, init_args}` specs.

What the space registry (and a space's own options, such as a layer-wise space's block factory)
use to reach code the package does not ship. Failures the user can fix raise `ConfigError`.
"""
from __future__ import annotations

import importlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from lightning_nas.errors import ConfigError

SPEC_SUFFIXES = (".yaml", ".yml", ".json")


def import_object(path: str, what: str) -> Any:
    """The object named by `pkg.module.Name` (or `pkg.module:Name`); `what` names it in errors."""
    module_name, sep, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{what} {path!r} is not a class path: expected 'package.module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not f"{module_name}.".startswith(f"{e.name}."):
            raise  # the module exists but imports something missing: not a wrong path
        raise ConfigError(
            f"{what} {path!r}: no module named {e.name!r}; is the package installed, or its folder on PYTHONPATH?"
        ) from None
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} {path!r}: module {module_name!r} has no {attribute!r}")
        obj = getattr(obj, part)
    return obj


def entry_point(group: str, name: str) -> Any | None:
    """The loaded entry point `name` of `group` (an installed package's `[project.entry-points]`)."""
    for point in metadata.entry_points(group=group):
        if point.name == name:
            return point.load()
    return None


def entry_point_names(group: str) -> list[str]:
    return sorted({point.name for point in metadata.entry_points(group=group)})


def read_spec(ref: str) -> dict[str, Any] | None:
    """A `{class_path, init_args}` mapping given as JSON text or as a .yaml/.yml/.json file, or
    None when `ref` is neither."""
    text = ref.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"malformed JSON spec {ref!r}: {e}") from None
        return check_spec(spec, "the JSON spec")
    if text.endswith(SPEC_SUFFIXES) and Path(text).is_file():
        import yaml

        try:
            spec = yaml.safe_load(Path(text).read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{text} is not valid YAML/JSON: {e}".splitlines()[0]) from None
        return check_spec(spec, text)
    return None


def check_spec(spec: Any, where: str) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("class_path"), str):
        raise ConfigError(f"{where} must be a mapping with a 'class_path' (and optional 'init_args')")
    unknown = set(spec) - {"class_path", "init_args"}
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(sorted(unknown))}; only class_path and init_args")
    init_args = spec.get("init_args") or {}
    if not isinstance(init_args, Mapping):
        raise ConfigError(f"{where}: init_args must be a mapping of constructor arguments")
    return {"class_path": spec["class_path"], "init_args": dict(init_args)}
