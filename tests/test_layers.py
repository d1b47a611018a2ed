"""The package's layers import in one direction only (issue 21).

    io  <  models  <  config  <  data  <  engine, predict, hub, api, flops, plot, visualize, demo  <  commands, cli

Each module may import modules of its own layer or lower ones, never a higher one; modules never import
each other in a cycle (module-level imports); and a function never imports a haltingvt module (a deferred
import hides a dependency): only the optional or slow third-party packages below are imported in functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "haltingvt"

#: Layer of each module, by the longest dotted prefix that names it.
LAYERS = {
    "haltingvt.io": 0,  # archive reading, safetensors with digest, atomic writes, textsafe, offline
    "haltingvt.models": 1,  # settings, layers, model, key maps, weights (through io only)
    "haltingvt.config": 2,  # YAML, _base_, overrides, the schema (model/loss sections from models.config)
    "haltingvt.data": 3,
    "haltingvt.flops": 4,  # reads an architecture through config.resolve_arch
    "haltingvt.plot": 4,
    "haltingvt.visualize": 4,
    "haltingvt.engine": 4,
    "haltingvt.hub": 4,  # haltingvt.HaltingVT: test pipeline, model card, Hub transfers
    "haltingvt.api": 4,  # haltingvt.create_model: config names -> haltingvt.HaltingVT
    "haltingvt.predict": 4,
    "haltingvt.demo": 4,
    "haltingvt.app": 4,  # the web page (haltingvt app); gradio imported on use
    "haltingvt": 4,  # the package's public API (__init__)
    "haltingvt.commands": 5,
    "haltingvt.cli": 5,
    "haltingvt.__main__": 5,
}
LAYER_NAMES = ["io", "models", "config", "data", "engine/predict/hub/...", "commands/cli"]

#: Third-party packages a function may import (optional or slow to import), by top-level name.
DEFERRED_OK = {
    "matplotlib": "slow: only when a picture is drawn (plot, visualize)",
    "huggingface_hub": "optional: Hub transfers and the Hub cache only",
    "gradio": "optional (the app extra): the web page of haltingvt app only",
    "timm": "slow: timm's model registry, only for a timm model name (io.offline)",
    "torch": "torch.utils.tensorboard only: optional, a TensorBoard writer (engine.runlog)",
}
DEFERRED_TORCH_OK = ("torch.utils.tensorboard",)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def layer_of(module: str) -> int:
    best = max(
        (prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len, default=None
    )
    if best is None:
        raise AssertionError(f"{module} has no layer in tests/test_layers.py: LAYERS")
    return LAYERS[best]


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The haltingvt modules an import statement imports (empty for third-party ones)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "haltingvt"]
    if node.level == 0:
        base = node.module or ""
        if base.split(".")[0] != "haltingvt":
            return []
    else:
        package = module if _is_package(module) else module.rsplit(".", 1)[0]
        parts = package.split(".")
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    out = []
    for alias in node.names:  # `from . import models` imports a module; `from .config import X` a name
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in MODULES else base)
    return out


def imports(module: str) -> tuple[list[tuple[int, str]], list[tuple[int, ast.Import | ast.ImportFrom]]]:
    """(module-level imports of haltingvt modules as (line, module), every import inside a function)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top: list[tuple[int, str]] = []
    deferred: list[tuple[int, ast.Import | ast.ImportFrom]] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if in_function:
                    deferred.append((child.lineno, child))
                else:
                    top.extend((child.lineno, target) for target in _targets(module, child))
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    walk(tree, False)
    return top, deferred


def test_every_module_has_a_layer():
    assert len(MODULES) > 50
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_of_a_higher_layer(module):
    own = layer_of(module)
    bad = [
        f"line {line}: {target} ({LAYER_NAMES[layer_of(target)]})"
        for line, target in imports(module)[0]
        if layer_of(target) > own
    ]
    assert not bad, f"{module} ({LAYER_NAMES[own]}) imports a higher layer: " + "; ".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_functions_import_no_haltingvt_module(module):
    bad = []
    for line, node in imports(module)[1]:
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("haltingvt")):
            bad.append(f"line {line}: {'.' * node.level}{node.module or ''} (a haltingvt module)")
            continue
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
        for name in names:
            top = name.split(".")[0]
            if top == "haltingvt":
                bad.append(f"line {line}: {name} (a haltingvt module)")
            elif top not in DEFERRED_OK or (top == "torch" and not name.startswith(DEFERRED_TORCH_OK)):
                bad.append(f"line {line}: {name} (not an optional or slow package: import it at the top)")
    assert not bad, f"{module}: imports inside functions: " + "; ".join(bad)


def test_no_import_cycles():
    graph = {module: sorted({target for _, target in imports(module)[0] if target != module}) for module in MODULES}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module)
    assert not cycles, "module-level import cycles: " + "; ".join(cycles)


def test_models_layer_imports_no_config_or_hub():
    """The model saves and loads its architecture and weights itself (io only): the config module, the
    test pipeline and the Hub stay above it."""
    for module in MODULES:
        if layer_of(module) <= LAYERS["haltingvt.models"]:
            for line, target in imports(module)[0]:
                assert layer_of(target) <= LAYERS["haltingvt.models"], f"{module}:{line} imports {target}"


@pytest.mark.slow
def test_importing_haltingvt_leaves_the_matplotlib_backend_alone():
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('svg'); import haltingvt, haltingvt.plot, haltingvt.visualize; "
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().lower() == "svg"
