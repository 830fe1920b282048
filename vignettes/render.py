"""Execute the vignettes and render them to HTML.

Usage (from the repository root)::

    python vignettes/render.py                 # all vignettes -> vignettes/_build/*.html
    python vignettes/render.py 01 03 --fast    # some of them, small n (MIXEDNN_FAST=1)

Each ``vignettes/NN_*.py`` is a jupytext percent-format notebook: it is read with
jupytext, executed top to bottom in a fresh ``python3`` kernel by nbclient (the
working directory is ``vignettes/``), and exported with nbconvert's HTML exporter
(figures embedded, one self-contained file per vignette).  The executed
``.ipynb`` is written next to the HTML.  The test suite
(``tests/test_vignettes.py``) uses :func:`execute` from this file with
``fast=True``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
BUILD = HERE / "_build"


def vignette_paths(names: Sequence[str] = ()) -> list[Path]:
    """The vignette sources ``NN_*.py``, sorted; ``names`` filters by prefix or stem.

    Parameters
    ----------
    names : sequence of str
        E.g. ``["01", "03_how_long_to_train"]``; empty for all.

    Returns
    -------
    list of pathlib.Path
    """
    paths = sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))
    if not names:
        return paths
    out = []
    for name in names:
        hits = [p for p in paths if p.stem == name or p.stem.startswith(name) or p.name == name]
        if not hits:
            known = ", ".join(p.stem for p in paths)
            raise SystemExit(f"render.py: no vignette matches {name!r} (known: {known})")
        out.extend(h for h in hits if h not in out)
    return out


def execute(path: Path, *, fast: bool = False, cell_timeout: int = 600,
            kernel_name: str = "python3"):
    """Read a percent-format vignette with jupytext and execute it with nbclient.

    Parameters
    ----------
    path : pathlib.Path
        The ``.py`` source.
    fast : bool
        Run with ``MIXEDNN_FAST=1`` (small n, few simulations).
    cell_timeout : int
        Seconds allowed for any one cell.
    kernel_name : str
        Jupyter kernel to run in.

    Returns
    -------
    tuple (nbformat.NotebookNode, float)
        The executed notebook and the wall time in seconds.
    """
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(path)
    env = dict(os.environ)
    # The kernel's own inline backend embeds figures as PNG; a headless Agg setting
    # inherited from CI would leave only text reprs in the rendered page.
    env.pop("MPLBACKEND", None)
    if fast:
        env["MIXEDNN_FAST"] = "1"
    else:
        env.pop("MIXEDNN_FAST", None)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute(env=env)
    return nb, time.perf_counter() - start


def to_html(nb, out: Path) -> Path:
    """Export an executed notebook to a self-contained HTML file."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute the vignettes and render them to HTML.")
    parser.add_argument("names", nargs="*", help="vignettes to render (prefix like 01, or stem)")
    parser.add_argument("--fast", action="store_true", help="small n / few simulations")
    parser.add_argument("--out", type=Path, default=BUILD, help=f"output folder (default {BUILD})")
    args = parser.parse_args(argv)
    import nbformat

    for path in vignette_paths(args.names):
        nb, secs = execute(path, fast=args.fast)
        args.out.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, args.out / f"{path.stem}.ipynb")
        html = to_html(nb, args.out / f"{path.stem}.html")
        print(f"{path.name}: executed in {secs:.1f} s -> {html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
