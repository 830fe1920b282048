"""The layering of the package, pinned: imports only point down, no private name crosses
a module, and the training time is chosen in one place (tests/architecture.py)."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from tests import architecture as arch

TESTS_DIR = Path(__file__).resolve().parent
TIME_SEARCHES = {"maximize", "minimize_criterion", "choose_time", "auto_time", "choose_t",
                 "select_free_modes", "fit_groups"}
#: Where a search over t may be called: the rules layer, and model.fit (through choose_t).
#: hyper.py maximises the profile likelihood over kernel hyperparameters, which needs t's
#: maximum for each candidate kernel (a different fit, not this fit's t).
#: groupfit chooses (t, theta) of a model with group effects (called by model.fit); the
#: simulated likelihood-ratio test of t = 0 in groupresults refits simulated responses.
SEARCH_ALLOWED = {"mixednn.profile", "mixednn.stopping", "mixednn.freemodes",
                  "mixednn.autotime", "mixednn.timechoice", "mixednn.model", "mixednn.hyper",
                  "mixednn.groupfit", "mixednn.groupresults"}


def test_every_module_imports_only_from_layers_below():
    assert arch.layering_violations() == []


def test_layering_check_catches_an_upward_import(tmp_path):
    copy = tmp_path / "mixednn"
    shutil.copytree(arch.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "profile.py"
    target.write_text(target.read_text() + "\n\ndef _late():\n    from .results import "
                      "MixedLMNTKResults  # an upward, lazy import\n    return MixedLMNTKResults\n")
    problems = arch.layering_violations(copy)
    assert any("mixednn.profile" in p and "mixednn.results" in p and "not below" in p
               for p in problems), problems


def test_every_module_is_placed_in_a_layer():
    placed = {m for _, mods in arch.LAYERS for m in mods}
    assert set(arch.package_modules()) == placed


def test_no_private_name_crosses_a_module_in_the_package():
    paths = sorted(arch.PACKAGE_DIR.rglob("*.py"))
    assert arch.private_name_crossings(paths) == []


def test_tests_use_only_public_names():
    paths = sorted(TESTS_DIR.rglob("*.py"))
    assert arch.private_name_crossings(paths) == []


def test_the_training_time_is_searched_for_only_in_the_rules_layer():
    offenders = []
    for name, path in arch.package_modules().items():
        if name in SEARCH_ALLOWED:
            continue
        tree = ast.parse(path.read_text())
        own = {n.name for n in ast.walk(tree)
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if called in TIME_SEARCHES and called not in own:
                    offenders.append(f"{name}:{node.lineno} calls {called}")
    assert offenders == []


def test_results_are_not_written_to_from_other_modules():
    """No module assigns attributes on a results object (``res.x = ...``)."""
    offenders = []
    for name, path in arch.package_modules().items():
        if name == "mixednn.results":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                for tgt in node.targets:
                    if isinstance(tgt, ast.Attribute) and isinstance(tgt.value, ast.Name) \
                            and tgt.value.id in ("res", "results", "fit", "fitted"):
                        offenders.append(f"{name}:{node.lineno} sets {tgt.value.id}.{tgt.attr}")
    assert offenders == []


@pytest.mark.parametrize("cls", ["TimeChoice", "TimeEstimate", "AutoCheck", "FreeModes"])
def test_time_records_are_frozen(cls):
    import dataclasses

    import mixednn.autotime
    import mixednn.freemodes
    import mixednn.profile
    import mixednn.timechoice

    mod = next(m for m in (mixednn.timechoice, mixednn.profile, mixednn.autotime,
                           mixednn.freemodes) if hasattr(m, cls))
    assert dataclasses.fields(getattr(mod, cls))
    assert getattr(mod, cls).__dataclass_params__.frozen
