"""Every vignette executes end to end (fast mode) and renders to HTML with its figures."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VIGNETTES = ROOT / "vignettes"
#: wall-clock budget per vignette in fast mode (kernel start included); they take ~5-20 s
BUDGET_S = 120


def _render_module():
    spec = importlib.util.spec_from_file_location("mixednn_vignette_render", VIGNETTES / "render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


render = _render_module()
PATHS = render.vignette_paths()


def test_the_five_vignettes_exist_as_percent_notebooks():
    stems = [p.stem for p in PATHS]
    assert len(stems) >= 5 and [s[:2] for s in stems[:5]] == ["01", "02", "03", "04", "05"]
    for p in PATHS:
        text = p.read_text()
        assert "format_name: percent" in text and "name: python3" in text, p.name
        assert "MIXEDNN_FAST" in text, f"{p.name} must read MIXEDNN_FAST"
        assert text.count("# %% [markdown]") >= 3, f"{p.name}: prose cells expected"


def test_readme_links_every_vignette():
    readme = (ROOT / "README.md").read_text()
    for p in PATHS:
        assert f"vignettes/{p.name}" in readme, p.name


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_vignette_executes_in_fast_mode(path, tmp_path):
    nb, secs = render.execute(path, fast=True, cell_timeout=BUDGET_S)
    assert secs < BUDGET_S, f"{path.name} took {secs:.0f} s in fast mode"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "every code cell ran"
    images = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{path.name} shows no figure"
    if path.stem.startswith("01"):
        html = render.to_html(nb, tmp_path / f"{path.stem}.html").read_text()
        assert len(re.findall(r"data:image/png;base64,", html)) >= 3
        assert "Getting started" in html and "Training time t (NTK)" in html


def test_render_rejects_unknown_names():
    with pytest.raises(SystemExit, match="no vignette matches"):
        render.vignette_paths(["99_nope"])
