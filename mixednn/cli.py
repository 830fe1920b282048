"""The ``mixednn`` command line: ``demo``, ``fit`` and ``datasets``."""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Sequence

from . import datasets
from .kernels import MLP
from .model import MixedLMNTK

__all__ = ["main", "format_pvalue"]

DEMO_FORMULA = "np.log1p(bikers) ~ workingday + C(weathersit) + C(season)"
DEMO_NTK = "~ hr + temp + hum + windspeed"


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    df = datasets.load("bikeshare")
    sub = df.sample(n=min(args.n, len(df)), random_state=args.seed) if args.n < len(df) else df
    print(f"Bikeshare (ISLP; UCI Bike Sharing, Fanaee-T & Gama 2013): {len(sub):,} of "
          f"{len(df):,} hourly rows (random subset, seed {args.seed})\n")
    print(f"  formula: {DEMO_FORMULA}\n  network inputs: {DEMO_NTK}\n"
          f"  network: MLP(depth={args.depth}, activation={args.activation!r}), infinite width\n")
    model = MixedLMNTK.from_formula(DEMO_FORMULA, sub, ntk=DEMO_NTK,
                                    network=MLP(depth=args.depth, activation=args.activation))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit()
    print(res.summary())
    for w in caught:
        print(f"note: {w.message}")
    _demo_tests(res)
    held = df.drop(index=sub.index)
    # predict only at weather levels the fit has seen (one hour of heavy rain in 8,645)
    held = held[held["weathersit"].isin(sub["weathersit"].unique())]
    if len(held):
        test = held.sample(n=min(2000, len(held)), random_state=args.seed + 1)
        pred = res.predict(test, interval="prediction")
        y = np.log1p(test["bikers"].to_numpy())
        mse = float(np.mean((y - pred["mean"].to_numpy()) ** 2))
        cover = float(np.mean((y >= pred["lower"]) & (y <= pred["upper"])))
        base = float(np.mean((y - y.mean()) ** 2))
        print(f"\nHeld-out check on {len(test):,} other rows: MSE {mse:.4f} (variance of y "
              f"{base:.4f}); 95% prediction intervals cover {cover:.1%}.")
    if args.plot:
        path = _demo_figure(res, args.plot)
        print(f"\nDiagnostic plots (profile likelihood, spectral decorrelation, observed and "
              f"residuals vs fitted) saved to {path}")
    return 0


def _demo_tests(res) -> None:
    """Print the tests of H0: t = 0 (should the network be trained at all?).

    Uses ``res.score_test()`` and ``res.lr_test()`` (:mod:`mixednn.inference`); when
    neither can be computed here (``NotImplementedError``), the restricted likelihood
    ratio with its asymptotic 50:50 mixture of chi2_0 and chi2_1 (model.md section 3).
    """
    from scipy import stats

    print("\nShould the network be trained at all? Tests of H0: t = 0")
    shown = False
    calls = ((res.score_test, "Score test", {}),
             (res.lr_test, "Restricted LRT" if res.reml else "LRT", {"nsim": 2000, "seed": 0}))
    for fn, label, kwargs in calls:
        try:
            test = fn(**kwargs)
        except NotImplementedError:
            continue
        if not test.valid:  # an InapplicableTest, which says why
            print(f"  {label:<15} not applicable: {test.reason}")
            continue
        mix = test.details.get("mixture p-value")
        how = test.method + (f"; 50:50 mixture p-value {format_pvalue(mix)}"
                             if mix is not None else "")
        print(f"  {label:<15} statistic = {test.statistic:.4g}, "
              f"p-value = {format_pvalue(test.pvalue)}" + (f" ({how})" if how else ""))
        shown = True
    if not shown:
        rlrt = max(2.0 * (res.llf - res.estimate.llf_zero), 0.0)
        p = 0.5 * float(stats.chi2.sf(rlrt, 1)) if rlrt > 0 else 1.0
        print(f"  {'Restricted LRT' if res.reml else 'LRT':<15} statistic = {rlrt:.4g}, "
              f"p-value = {format_pvalue(p)} (asymptotic 50:50 mixture of chi2_0 and chi2_1)")


def format_pvalue(p: float) -> str:
    """A p-value that underflowed to 0 prints as a bound, not as 0."""
    p = float(p)
    return "< 1e-300" if p < 1e-300 else f"{p:.4g}"


def _demo_figure(res, path: str) -> str:
    """Save a 2 x 2 panel of the diagnostic plots to ``path``; returns the path."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.5, 9.0), layout="constrained")
    axs = fig.subplots(2, 2)
    res.plot_profile(ax=axs[0, 0])
    res.plot_spectrum(ax=axs[0, 1])
    res.plot_fit(axes=axs[1])
    try:
        fig.savefig(path, dpi=100)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"mixednn: error: could not save the plot to {path!r}: {exc}") from None
    return path


def _read_data(path: str):
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise SystemExit(f"mixednn: error: data file {path!r} does not exist")
    try:
        return pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes a clear message
        raise SystemExit(f"mixednn: error: could not read {path!r} as CSV: {exc}") from None


def _fit(args: argparse.Namespace) -> int:
    df = _read_data(args.data)
    ntk = args.ntk
    if ntk is not None and "~" not in ntk:
        ntk = [c.strip() for c in ntk.split(",") if c.strip()]
    try:
        model = MixedLMNTK.from_formula(
            args.formula, df, ntk=ntk,
            network=MLP(depth=args.depth, activation=args.activation,
                        weight_std=args.weight_std, bias_std=args.bias_std))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = model.fit(reml=not args.ml, t_method=args.t_method)
    except (ValueError, KeyError, TypeError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        raise SystemExit(f"mixednn: error: {msg}") from None
    if args.json:
        def num(v):  # JSON has no NaN or infinity
            return float(v) if v is not None and math.isfinite(v) else None

        lo, hi = res.t_conf_int()
        check = res.auto_check
        out = {
            "method": res.method, "nobs": res.nobs, "rows_dropped": model.data.n_dropped,
            "llf": res.llf, "aic": res.aic, "bic": res.bic, "converged": res.converged,
            "t": res.t, "t_method": res.t_method, "t_reml": res.t_reml,
            "auto_check": None if check is None else check.reason,
            "t_se": None if res.boundary else num(res.t_se), "t_ci": [num(lo), num(hi)],
            "scale": res.scale, "scale_se": res.scale_se, "edf": res.edf,
            "params": res.params.to_dict(), "bse": res.bse.to_dict(),
            "pvalues": res.pvalues.to_dict(), "network": model.kernel_source.description,
            "warnings": [str(w.message) for w in caught],
        }
        print(json.dumps(out, indent=2))
    else:
        print(res.summary())
        for w in caught:
            print(f"note: {w.message}")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    import pandas as pd

    with pd.option_context("display.max_colwidth", 70, "display.width", 160):
        print(datasets.list().to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixednn",
        description="Neural-network training as a random effect: REML early stopping and "
                    "tests of t = 0.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit the flagship model on the bundled bikeshare data",
                          description="Fit log1p(bikers) with an infinite-width ReLU NTK of hour, "
                                      "temperature, humidity and wind on bundled bikeshare data.")
    demo.add_argument("--n", type=int, default=2000, help="rows to fit on (random subset; default 2000)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--depth", type=int, default=2)
    demo.add_argument("--activation", default="relu")
    demo.add_argument("--plot", default="mixednn-demo.png",
                      help="where to save the diagnostic plots, PNG/PDF/SVG by extension "
                           "('' for none; default mixednn-demo.png)")
    demo.set_defaults(func=_demo)
    fit = sub.add_parser("fit", help="fit a model to a CSV file",
                         description="Fit MixedLMNTK to DATA.csv and print the summary (or JSON).")
    fit.add_argument("data", help="CSV file with a header row")
    fit.add_argument("formula", help="patsy formula, e.g. 'y ~ x1 + C(g)'")
    fit.add_argument("--ntk", help="network inputs: '~ x2 + x3' or 'x2,x3'")
    fit.add_argument("--depth", type=int, default=2)
    fit.add_argument("--activation", default="relu")
    fit.add_argument("--weight-std", type=float, default=1.0)
    fit.add_argument("--bias-std", type=float, default=0.0)
    fit.add_argument("--ml", action="store_true", help="maximum likelihood instead of REML")
    fit.add_argument("--t-method", default=None,
                     choices=("auto", "reml", "ml", "gcv", "cp", "loo", "kfold"),
                     help="rule for the training time t (default: the likelihood's t, with a "
                          "prediction check as a diagnostic; auto = let that check replace it "
                          "by GCV's t)")
    fit.add_argument("--json", action="store_true", help="print results as JSON")
    fit.set_defaults(func=_fit)
    ds = sub.add_parser("datasets", help="list the bundled datasets")
    ds.set_defaults(func=_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mixednn`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
