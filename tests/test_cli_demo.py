"""``mixednn demo``: summary, tests of t = 0, held-out check and a saved diagnostic figure."""

from __future__ import annotations

import numpy as np
import pytest

from mixednn.cli import format_pvalue, main


def test_demo_prints_summary_tests_and_saves_plot(tmp_path, capsys):
    import matplotlib.image as mpimg

    png = tmp_path / "demo.png"
    assert main(["demo", "--n", "300", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "Training time t (NTK)" in out
    assert "Tests of H0: t = 0" in out and "p-value" in out
    assert "Held-out check" in out and str(png) in out
    assert png.stat().st_size > 20_000
    img = mpimg.imread(png)
    assert img.shape[0] > 400 and float(img[..., :3].mean(axis=2).var()) > 1e-3


def test_demo_without_plot_and_bad_plot_path(tmp_path, capsys):
    assert main(["demo", "--n", "200", "--plot", ""]) == 0
    assert "saved to" not in capsys.readouterr().out
    with pytest.raises(SystemExit, match="could not save the plot"):
        main(["demo", "--n", "200", "--plot", str(tmp_path / "no-such-dir" / "x.png")])


def test_small_pvalues_print_as_a_bound():
    assert format_pvalue(0.0) == "< 1e-300" and format_pvalue(0.0312) == "0.0312"
    assert format_pvalue(np.float64(1.035e-235)) == "1.035e-235"
