"""The README's set-up commands and CI agree, and the console script runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Set-up \(two commands\)\s*```bash\n(.*?)```", readme, re.S).group(1)
    lines = [ln.strip() for ln in block.strip().splitlines()]
    assert len(lines) == 2
    assert lines[0].startswith("pip install torch==2.13.0") and lines[0].endswith("mixednn demo")
    ci = (ROOT / ".ci" / "run").read_text()
    assert lines[1] in [ln.strip() for ln in ci.splitlines()]
    assert ci.index("torch==2.13.0") < ci.index('-e ".[test]"')


def test_changelog_has_unreleased_section():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in text and "### Added" in text


def test_cli_help_and_errors(capsys):
    from mixednn.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="does not exist"):
        main(["fit", "no-such-file.csv", "y ~ x", "--ntk", "~ z"])


def test_cli_fit_json(tmp_path, capsys):
    import json

    import numpy as np
    import pandas as pd

    from mixednn.cli import main

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=80), "z": rng.normal(size=80)})
    df["y"] = df["x"] + np.sin(2 * df["z"]) + 0.3 * rng.normal(size=80)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    assert main(["fit", str(path), "y ~ x", "--ntk", "~ z", "--json", "--depth", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nobs"] == 80 and out["t"] > 0 and "x" in out["params"]
    assert out["t_method"] in ("reml", "gcv") and out["auto_check"]
    # a prediction-error rule has no likelihood interval: null, never a bare NaN
    assert main(["fit", str(path), "y ~ x", "--ntk", "~ z", "--json", "--t-method", "gcv"]) == 0
    text = capsys.readouterr().out
    out = json.loads(text)
    assert "NaN" not in text and out["t_method"] == "gcv" and out["t_ci"] == [None, None]
    assert out["auto_check"] is None and out["t_reml"] > 0
    with pytest.raises(SystemExit, match="could not evaluate formula"):
        main(["fit", str(path), "y ~ nope", "--ntk", "~ z"])
    with pytest.raises(SystemExit, match="not found"):
        main(["fit", str(path), "y ~ x", "--ntk", "nope"])
