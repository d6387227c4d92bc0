"""The package's structure as docs/architecture.md states it: layers, imports, configs.

* A lower layer never imports a higher one (module-level or inside a function).
* A function-local import of the package's own modules says why in a comment (a cycle it
  avoids, or a heavy optional dependency): everything else is imported at module level.
* Bundle configs read as data: no ``$`` expression longer than 150 characters.
* The multi-GPU configs of the four bundles are one design: identical ``multi_gpu_inference.json``
  and the same distributed skeleton in every ``multi_gpu_train.json``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "common" / "medsegzoo"
BUNDLES = sorted(p for p in (REPO / "bundles").iterdir() if (p / "configs").is_dir())

# the layer of every top-level unit of the package: a unit imports only lower layers
LAYERS: dict[str, int] = {
    "__init__": 0, "errors": 0,
    "utils": 1,
    "taxonomy": 2, "bundle_runs": 2, "zoo": 2,
    "data": 3,
    "transforms": 4, "planning": 4, "evaluation": 4, "networks": 4, "losses": 4,
    "inference": 5,
    "engines": 6,
    "recipes": 7, "drivers": 7,
    "demo": 8, "commands": 8,
    "cli": 9,
    "__main__": 10,
}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _package_imports() -> list[tuple[Path, int, str, str, bool, bool]]:
    """(file, line, importing unit, imported module, inside a function, has a comment)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).with_suffix("")
        module = ".".join(("medsegzoo", *relative.parts)).removesuffix(".__init__")
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ImportFrom):
                targets = [node.module or ""]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                if target == "medsegzoo" or target.startswith("medsegzoo."):
                    line = lines[node.lineno - 1]
                    previous = lines[node.lineno - 2] if node.lineno > 1 else ""
                    commented = "#" in line or previous.strip().startswith("#")
                    found.append((path, node.lineno, _unit(module), target, node.col_offset > 0, commented))
    return found


def test_every_unit_of_the_package_has_a_layer() -> None:
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file()))}
    assert units == set(LAYERS), f"add the new unit(s) {sorted(units - set(LAYERS))} to LAYERS and docs/architecture.md"


def test_no_lower_layer_imports_a_higher_one() -> None:
    wrong = [
        f"{path.relative_to(REPO)}:{line}: {unit} (layer {LAYERS[unit]}) imports {target} (layer {LAYERS[_unit(target)]})"
        for path, line, unit, target, local, commented in _package_imports()
        # the one allowed exception: a command's own `python -m` entry point calls the dispatcher
        if _unit(target) != unit and LAYERS[_unit(target)] >= LAYERS[unit] and not (unit == "commands" and target == "medsegzoo.cli" and local)
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_function_local_imports_of_the_package_say_why() -> None:
    silent = [f"{path.relative_to(REPO)}:{line}: {target}" for path, line, _, target, local, commented in _package_imports()
              if local and not commented]
    assert not silent, ("import these at module level, or say in a comment why they are local "
                        "(a cycle, a heavy optional dependency):\n" + "\n".join(silent))


def _expressions(value: object, where: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _expressions(v, f"{where}#{k}" if where else k)]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _expressions(v, f"{where}#{i}")]
    return [(where, value)] if isinstance(value, str) and value.startswith("$") else []


@pytest.mark.parametrize("bundle", BUNDLES, ids=lambda p: p.name)
def test_configs_read_as_data(bundle: Path) -> None:
    long = [f"{config.relative_to(REPO)} {key}: {len(expr)} characters"
            for config in sorted((bundle / "configs").rglob("*.json"))
            for key, expr in _expressions(json.loads(config.read_text()))
            if len(expr) > 150]
    assert not long, "give these a named factory in the package (a _target_ component):\n" + "\n".join(long)


def test_multi_gpu_configs_are_one_design() -> None:
    inference = {b.name: json.loads((b / "configs" / "multi_gpu_inference.json").read_text()) for b in BUNDLES}
    first = next(iter(inference.values()))
    assert all(config == first for config in inference.values()), "multi_gpu_inference.json differs between bundles"
    for bundle in BUNDLES:
        train = json.loads((bundle / "configs" / "multi_gpu_train.json").read_text())
        assert train["dist_backend"] is None and train["device"] == first["device"], bundle.name
        assert train["network"]["_target_"] == "torch.nn.parallel.DistributedDataParallel", bundle.name
        assert train["initialize"][:3] == first["initialize"][:3], bundle.name  # the same process-group start
        assert train["finalize"], bundle.name
