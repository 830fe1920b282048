"""The package's layering, declared once and checked by ``tests/test_architecture.py``.

Every module of mixednn sits in one layer; a module may import only from lower layers
(and from modules listed before it in its own layer).  Function-level and
``TYPE_CHECKING`` imports count.  ``docs/architecture.md`` draws the same table.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "mixednn"

#: Bottom to top.  Within a layer, a module may import the ones listed before it.
LAYERS: list[tuple[str, list[str]]] = [
    ("0 foundations", ["mixednn.exceptions", "mixednn.numerics", "mixednn.interfaces",
                       "mixednn.persistence"]),
    ("1 data and kernels", [
        "mixednn.rows", "mixednn.checks", "mixednn.formula", "mixednn.bars", "mixednn.newrows",
        "mixednn.partitions", "mixednn.streaming",
        "mixednn.datasets.loaders", "mixednn.datasets",
        "mixednn.kernels.activations", "mixednn.kernels.source", "mixednn.kernels.dual",
        "mixednn.kernels.quadrature", "mixednn.kernels.recursion", "mixednn.kernels.analytic",
        "mixednn.kernels.torch_ntk", "mixednn.kernels.operator",
        "mixednn.kernels.torch_mlp", "mixednn.kernels.ntk_engine", "mixednn.kernels.ntk_blocks",
        "mixednn.kernels.empirical", "mixednn.kernels.resolve", "mixednn.kernels"]),
    ("2 likelihood", ["mixednn.profile", "mixednn.groupprofile"]),
    ("3 bases", ["mixednn.spectral", "mixednn.krylov", "mixednn.features", "mixednn.lowrank"]),
    ("4 rules for t", ["mixednn.smoother", "mixednn.stopping", "mixednn.freemodes",
                       "mixednn.autotime", "mixednn.timechoice", "mixednn.groupfit"]),
    ("5 prediction and tail probabilities", [
        "mixednn.prediction", "mixednn.tailprob", "mixednn.quadform", "mixednn.chi2sums",
        "mixednn.hypotheses"]),
    ("6 reading a fit", ["mixednn.lrnull", "mixednn.inference", "mixednn.comparison",
                         "mixednn.trainingpath", "mixednn.training", "mixednn.plotting",
                         "mixednn.summary", "mixednn.contrasts", "mixednn.intervals"]),
    ("7 results", ["mixednn.results", "mixednn.groupresults"]),
    ("8 model", ["mixednn.model"]),
    ("9 applications", ["mixednn.kernelgrad", "mixednn.hyper", "mixednn.cli", "mixednn"]),
]

#: Modules that import torch at module level: the only package modules that may be
#: imported inside a function (lazily, because torch is heavy), and only from above.
HEAVY_MODULES = {"mixednn.kernels.empirical", "mixednn.kernels.torch_mlp",
                 "mixednn.kernels.ntk_engine", "mixednn.kernels.ntk_blocks"}


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    rel = path.relative_to(package_dir.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    return {module_name(p, package_dir): p for p in sorted(package_dir.rglob("*.py"))}


def rank() -> dict[str, tuple[int, int]]:
    out = {}
    for i, (_, mods) in enumerate(LAYERS):
        for j, m in enumerate(mods):
            out[m] = (i, j)
    return out


def _resolve(current: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, known: set[str], package_dir: Path = PACKAGE_DIR
            ) -> list[tuple[str, int, bool, list[str]]]:
    """(target module, line, at function level, names) for every import of a package module."""
    name = module_name(path, package_dir)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            lazy = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for a in child.names:
                    if a.name == "mixednn" or a.name.startswith("mixednn."):
                        out.append((a.name, child.lineno, in_function, []))
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(name, is_pkg, child)
                if target == "mixednn" or target.startswith("mixednn."):
                    names = [a.name for a in child.names]
                    # "from . import x" may name a submodule
                    subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
                    if subs:
                        out.extend((s, child.lineno, in_function, []) for s in subs)
                    else:
                        out.append((target, child.lineno, in_function, names))
            visit(child, lazy)

    visit(tree, False)
    return out


def layering_violations(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Every import that points sideways-later or upward, or is lazy without cause."""
    mods = package_modules(package_dir)
    ranks = rank()
    problems = [f"{m}: not placed in a layer (add it to tests/architecture.py LAYERS)"
                for m in mods if m not in ranks]
    for m, path in mods.items():
        if m not in ranks:
            continue
        for target, line, lazy, _ in imports(path, set(mods), package_dir):
            if target not in ranks:
                problems.append(f"{m}:{line} imports unknown module {target}")
            elif not ranks[target] < ranks[m]:
                problems.append(f"{m}:{line} imports {target}, which is not below it")
            elif lazy and target not in HEAVY_MODULES:
                problems.append(f"{m}:{line} imports {target} inside a function (lazy imports "
                                "are only for modules that load torch)")
    return problems


def _defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a file defines itself: functions, classes, attributes, variables."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
    return {n for n in out if n.startswith("_")}


def _is_private(name: str) -> bool:
    # dunders and IPython's display protocol (``_repr_html_``) are public by convention
    return name.startswith("_") and not name.endswith("_")


def private_name_crossings(paths: list[Path]) -> list[str]:
    """Private names (``_x``) used in a file that the file does not define itself:
    imported from another module, or read as an attribute of another module's object."""
    problems = []
    for path in paths:
        tree = ast.parse(path.read_text())
        own = _defined_private_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if _is_private(a.name):
                        problems.append(f"{path.name}:{node.lineno} imports private {a.name}")
                mod = node.module or ""
                if any(_is_private(part) for part in mod.split(".")):
                    problems.append(f"{path.name}:{node.lineno} imports private module {mod}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if any(_is_private(part) for part in a.name.split(".")):
                        problems.append(f"{path.name}:{node.lineno} imports private module "
                                        f"{a.name}")
            elif isinstance(node, ast.Attribute) and _is_private(node.attr):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                if node.attr in own:
                    continue
                problems.append(f"{path.name}:{node.lineno} uses private attribute {node.attr}")
    return problems
