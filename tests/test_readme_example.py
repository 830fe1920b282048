"""The README's example prints the summary shown under it (the numeric rows agree)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _blocks(readme: str):
    code = re.search(r"## Example\s*```python\n(.*?)```", readme, re.S).group(1)
    shown = re.search(r"```python\n.*?```\s*prints\s*```text\n(.*?)```", readme, re.S).group(1)
    return code, shown


def test_readme_example_output_is_current(capsys):
    code, shown = _blocks((ROOT / "README.md").read_text())
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - our own README
    out = capsys.readouterr().out
    # the estimates and the lines that interpret them; the header's layout is free to change
    keys = ("Intercept", "C(", "workingday", "Training time", "Residual variance",
            "Effective df", "Score test")
    # compare the numbers and words, not the column padding
    rows = [" ".join(ln.split()) for ln in shown.splitlines() if ln.startswith(keys)]
    assert len(rows) >= 10
    printed = {" ".join(ln.split()) for ln in out.splitlines()}
    missing = [r for r in rows if r not in printed]
    assert not missing, f"README summary rows differ from the current output: {missing}"
