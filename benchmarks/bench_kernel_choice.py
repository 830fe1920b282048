"""Which rule should choose the kernel?  The evidence behind ``choose_kernel``'s BIC rule.

On the ten data sets and five splits of ``bench_peers.py`` (same splits, same fixed effects),
each split is fitted four ways by REML, on the training rows:

* ``plain``: the benchmark's fixed kernel (depth-3 ReLU NTK, no hyperparameters estimated);
* ``ard_relu``: ``optimize_kernel(input_scales="ard")`` on that kernel (the previous headline);
* ``ard_relu_bias``: a depth-1 ReLU network with the scales and the bias std by REML
  (``bias_std=True``, ``screen=16``);
* ``ard_sin``: ``mixednn.hyper.SIN_NETWORK`` with the scales and the bias std by REML
  (``bias_std=True``, ``screen=16``), the candidate of ``choose_kernel``;
* ``plain+lin``, ``ard_relu_bias+lin``, ``ard_sin+lin``: the same kernels with the network
  inputs also entered linearly in the fixed effects (``bench_peers``' OLS formula), the
  mixed-model form of a GAM whose smooths keep their linear part unpenalised.

For every split it records the REML log-likelihood, the ML log-likelihood of the same kernel
(hyperparameters as REML chose them, so a lower bound on the ML maximum), the number of
estimated kernel hyperparameters and the held-out MSE.  Then every selection rule -- AIC or
BIC (lme4's: ``-2 llf + log(n) k``, k = fixed effects + s2 + t + hyperparameters) over every
subset of at least two candidates, and each candidate alone -- is scored like the headline of
``bench_peers.py``: per data set the median held-out MSE of the chosen fits over the best
peer's median MSE (the peers' rows are read from ``results/bench_peers.csv``), then the
median and the worst over data sets.  Candidates with the same fixed effects are compared
by REML; a subset that mixes both fixed-effect sets is compared by ML, as ``anova`` does
(REML likelihoods with different fixed effects are not comparable).  The rule is chosen on
these same splits: read its numbers as in-sample for that choice.

    python benchmarks/bench_kernel_choice.py --threads 1      # about 15 minutes
    python benchmarks/bench_kernel_choice.py --report          # tables from the stored CSV
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_peers as bp  # noqa: E402  (same data sets, splits and peers)

import mixednn as mn  # noqa: E402
from mixednn.hyper import SIN_NETWORK, optimize_kernel  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results", "kernel_choice.csv")
PEERS = ("ols", "pygam", "gp", "krr", "mgcv")


def candidates() -> dict:
    """name -> (network, optimize_kernel options or None for the plain fit, inputs also
    linear in the fixed effects)."""
    base = {
        "plain": (bp.NET, None),
        "ard_relu": (bp.NET, {}),
        "ard_relu_bias": (mn.MLP(depth=1, bias_std=0.5), {"bias_std": True, "screen": 16}),
        "ard_sin": (SIN_NETWORK, {"bias_std": True, "screen": 16}),
    }
    out = {name: (*v, False) for name, v in base.items()}
    out.update({f"{name}+lin": (*base[name], True)
                for name in ("plain", "ard_relu_bias", "ard_sin")})
    return out


def run(seeds) -> pd.DataFrame:
    rows = []
    for spec in bp.load_specs():
        for seed in seeds:
            tr, te = bp.split(spec, seed)
            y = te["y"].to_numpy(float)
            cands = candidates()
            for name, (net, opts, linear) in cands.items():
                t0 = time.perf_counter()
                formula = spec.ols_formula if linear else spec.formula
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = mn.MixedLMNTK.from_formula(formula, data=tr,
                                                       ntk=list(spec.inputs), network=net)
                    if opts is None:
                        res, k = model.fit(), 0
                    else:
                        opt = optimize_kernel(model, input_scales="ard", **opts)
                        model, k = opt.model, int(opt.table["n_params"].iloc[0])
                        res = model.fit()
                    seconds = time.perf_counter() - t0
                    llf_ml = float(model.fit(reml=False, t_method="ml").llf)
                rows.append({"dataset": spec.name, "split": seed, "candidate": name,
                             "n_train": len(tr), "k_fe": model.k_fe, "n_params": k,
                             "llf": float(res.llf), "llf_ml": llf_ml,
                             "mse": float(np.mean((res.predict(te) - y) ** 2)),
                             "seconds": seconds})
            print(f"  {spec.name} split {seed}: " + ", ".join(
                f"{r['candidate']} llf {r['llf']:.1f} mse {r['mse']:.4g}"
                for r in rows[-len(cands):]), flush=True)
    return pd.DataFrame(rows)


def best_peer(peers_csv: str) -> pd.Series:
    df = pd.read_csv(peers_csv)
    df = df[(df["split"].astype(str) != "issue") & df["method"].isin(PEERS)]
    return df.groupby(["dataset", "method"])["mse"].median().groupby("dataset").min()


def score_rules(df: pd.DataFrame, best: pd.Series) -> pd.DataFrame:
    names = list(df["candidate"].unique())
    wide = df.pivot_table(index=["dataset", "split"], columns="candidate",
                          values=["llf", "llf_ml", "n_params", "k_fe", "mse"])
    n_train = df.groupby(["dataset", "split"])["n_train"].first()
    rules = [(n, [n], None) for n in names]
    for crit in ("aic", "bic"):
        for r in range(2, len(names) + 1):
            rules += [(f"{crit}: {' + '.join(c)}", list(c), crit)
                      for c in itertools.combinations(names, r)]
    out = []
    for label, allowed, crit in rules:
        chosen_mse = []
        for key, row in wide.iterrows():
            if crit is None:
                pick = allowed[0]
            else:
                pen = 2.0 if crit == "aic" else float(np.log(n_train.loc[key]))
                # REML likelihoods compare kernels only with the same fixed effects
                lik = "llf" if len({c.endswith("+lin") for c in allowed}) == 1 else "llf_ml"
                score = {c: -2 * row[(lik, c)] + pen * (row[("k_fe", c)] + 2
                                                        + row[("n_params", c)])
                         for c in allowed}
                pick = min(score, key=score.get)
            chosen_mse.append((key[0], row[("mse", pick)]))
        per = pd.DataFrame(chosen_mse, columns=["dataset", "mse"]).groupby("dataset")["mse"].median()
        ratio = per / best.reindex(per.index)
        out.append({"rule": label, "median_ratio": ratio.median(), "worst_ratio": ratio.max(),
                    "worst_dataset": ratio.idxmax(), **ratio.round(3).to_dict()})
    return pd.DataFrame(out).sort_values(["worst_ratio", "median_ratio"]).reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--peers", default=os.path.join(HERE, "results", "bench_peers.csv"))
    ap.add_argument("--report", action="store_true", help="only score the rules of --out")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        os.environ["MIXEDNN_NUM_THREADS"] = str(args.threads)
    if args.report:
        df = pd.read_csv(args.out)
    else:
        t0 = time.perf_counter()
        df = run(range(args.splits))
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        df.to_csv(args.out, index=False)
        print(f"elapsed {time.perf_counter() - t0:.0f} s")
    table = score_rules(df, best_peer(args.peers))
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    print("\nEach rule: median held-out MSE of its chosen fits over the best peer's, by data set "
          "(best worst-case first)")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
