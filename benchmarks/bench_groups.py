"""Group random effects beside the network: cost of the joint fit against the
network-only fit on the same data, measured in one run (issue target: at most 1.5x on
wage_panel, n = 4,360 with 545 men).

Run ``python benchmarks/bench_groups.py [--data wage_panel|gapminder] [--repeat 2]``.
The joint fit decomposes K fully (eigh) once, rotates Z (n x q) once and maximises REML
over (t, theta) at O(n q^2) per new t.  Ratios are against the network-only fit with
the same full decomposition (``decomposition="eigh"``); the network-only fit's default
from 3,000 rows is the Krylov route, which needs no full decomposition and is shown too.
Prints ratios, not a time target.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import mixednn as mn

CASES = {
    "wage_panel": ("lwage ~ educ + black + hisp + union + married", "nr",
                   ["exper", "hours"]),
    "gapminder": ("np.log(lifeExp) ~ C(continent)", "country", ["year", "gdpPercap"]),
}


def run(name: str, repeat: int) -> None:
    df = mn.datasets.load(name)
    formula, group, inputs = CASES[name]
    net = mn.MLP(depth=2)
    times = {"network only": [], "network only, eigh": [], "network + (1 | group)": []}
    for _ in range(repeat):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            plain = mn.MixedLMNTK.from_formula(formula, df, ntk=inputs, network=net).fit()
            t1 = time.perf_counter()
            mn.MixedLMNTK.from_formula(formula, df, ntk=inputs, network=net,
                                       decomposition="eigh").fit()
            t2 = time.perf_counter()
            both = mn.MixedLMNTK.from_formula(f"{formula} + (1 | {group})", df, ntk=inputs,
                                              network=net).fit()
            t3 = time.perf_counter()
        times["network only"].append(t1 - t0)
        times["network only, eigh"].append(t2 - t1)
        times["network + (1 | group)"].append(t3 - t2)
    base = np.median(times["network only, eigh"])
    print(f"{name}: n = {len(df)}, groups = {both.groups.blocks[0].levels.__len__()}")
    for k, v in times.items():
        print(f"  {k:<24} median {np.median(v):7.2f} s   ratio {np.median(v) / base:5.2f}"
              f"   (range {min(v) / base:.2f}-{max(v) / base:.2f})")
    print(f"  llf: network only {plain.llf:.3f}, with groups {both.llf:.3f}; t {plain.t:.4g} -> "
          f"{both.t:.4g}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="wage_panel", choices=sorted(CASES))
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    run(a.data, a.repeat)
