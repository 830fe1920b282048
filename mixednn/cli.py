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
from .hyper import choose_kernel
from .kernels import MLP
from .model import MixedLMNTK

__all__ = ["main", "format_pvalue", "zero_tests", "cli_message"]

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


def zero_tests(res, *, lr_null: str = "simulate", nsim: int = 2000,
               seed: int = 0) -> list[dict]:
    """The tests of H0: t = 0 (should the network be trained at all?), as records.

    Uses ``res.score_test()`` and ``res.lr_test(lr_null, nsim, seed)``
    (:mod:`mixednn.inference`); when neither gives a p-value here (``NotImplementedError``
    or inapplicable), the restricted likelihood ratio with its asymptotic 50:50 mixture
    of chi2_0 and chi2_1 (model.md section 3).  ``mixednn demo`` prints these records and
    ``mixednn fit --json`` writes them.

    Returns
    -------
    list of dict
        One per test: ``test`` (``"score"`` or ``"lr"``), ``label``, ``applicable`` and
        either ``statistic``, ``pvalue``, ``method`` and ``mixture_pvalue`` (None for
        the score test) or ``reason``.
    """
    from scipy import stats

    records: list[dict] = []
    calls = (("score", res.score_test, "Score test", {}),
             ("lr", res.lr_test, "Restricted LRT" if res.reml else "LRT",
              {"method": lr_null, "nsim": nsim, "seed": seed}))
    for key, fn, label, kwargs in calls:
        try:
            test = fn(**kwargs)
        except NotImplementedError:
            continue
        if not test.valid:  # an InapplicableTest, which says why
            records.append({"test": key, "label": label, "applicable": False,
                            "reason": test.reason})
            continue
        mix = test.details.get("mixture p-value")
        records.append({"test": key, "label": label, "applicable": True,
                        "statistic": float(test.statistic), "pvalue": float(test.pvalue),
                        "method": test.method,
                        "mixture_pvalue": None if mix is None else float(mix)})
    if not any(r["applicable"] for r in records):
        rlrt = max(2.0 * (res.llf - res.estimate.llf_zero), 0.0)
        p = 0.5 * float(stats.chi2.sf(rlrt, 1)) if rlrt > 0 else 1.0
        records.append({"test": "lr", "label": "Restricted LRT" if res.reml else "LRT",
                        "applicable": True, "statistic": rlrt, "pvalue": p,
                        "method": "asymptotic 50:50 mixture of chi2_0 and chi2_1",
                        "mixture_pvalue": None})
    return records


def _demo_tests(res) -> None:
    """Print the tests of H0: t = 0 (:func:`zero_tests`)."""
    print("\nShould the network be trained at all? Tests of H0: t = 0")
    for rec in zero_tests(res, nsim=2000, seed=0):
        label = rec["label"]
        if not rec["applicable"]:
            print(f"  {label:<15} not applicable: {rec['reason']}")
            continue
        mix = rec["mixture_pvalue"]
        how = rec["method"] + (f"; 50:50 mixture p-value {format_pvalue(mix)}"
                               if mix is not None else "")
        print(f"  {label:<15} statistic = {rec['statistic']:.4g}, "
              f"p-value = {format_pvalue(rec['pvalue'])}" + (f" ({how})" if how else ""))


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


#: Python spellings in the package's messages and the CLI options they stand for.
CLI_NAMES = (("weight_std", "--weight-std"), ("bias_std", "--bias-std"),
             ("t_method", "--t-method"), ("activation", "--activation"),
             ("depth", "--depth"))


def cli_message(msg: str) -> str:
    """A package message in the command line's words: ``weight_std`` -> ``--weight-std``,
    ``ntk='~ x'`` -> ``--ntk '~ x'``, ``fit(reml=False)`` -> ``--ml``, ...

    Examples
    --------
    >>> cli_message("weight_std must be finite and > 0; got -1.0")
    '--weight-std must be finite and > 0; got -1.0'
    >>> cli_message("pass a formula instead, e.g. ntk='~ C(g) + ...', to expand them")
    "pass a formula instead, e.g. --ntk '~ C(g) + ...', to expand them"
    """
    import re

    msg = re.sub(r"\bntk=", "--ntk ", msg)
    msg = re.sub(r"\bfit\(reml=False\)", "--ml", msg)
    msg = re.sub(r"\bfit\(t_method=(['\"])(\w+)\1\)", r"--t-method \2", msg)
    for name, option in CLI_NAMES:
        msg = re.sub(rf"(?<![\w-]){name}=(['\"])(\w+)\1", rf"{option} \2", msg)
        if "_" in name:  # an identifier, never an English word
            msg = re.sub(rf"(?<![\w-]){name}\b(?!\()", option, msg)
    return msg


def _fail(argument: str | None, exc: BaseException) -> SystemExit:
    """``mixednn fit: error: argument X: message``, as argparse words its own errors."""
    msg = cli_message(str(exc.args[0]) if exc.args else str(exc))
    for name in (argument, dict((o, n) for n, o in CLI_NAMES).get(argument)):
        if name and msg.startswith(name + " must"):  # "depth must be ..." -> "must be ..."
            msg = msg[len(name) + 1:]
    where = f"argument {argument}: " if argument else ""
    return SystemExit(f"mixednn fit: error: {where}{msg}")


def _network_option(msg: str) -> str | None:
    """The CLI option that an error of ``MLP(...)`` is about."""
    import re

    for name, option in CLI_NAMES:
        if re.search(rf"\b{name}\b", msg, flags=re.IGNORECASE):
            return option
    return None


def _model_argument(msg: str, args: argparse.Namespace) -> str | None:
    """Which argument a data/formula error is about: FORMULA or ``--ntk`` (None: unknown)."""
    if f"formula {args.formula!r}" in msg:
        return "FORMULA"
    if "network input" in msg or "network-input" in msg or "ntk" in msg \
            or (args.ntk and args.ntk in msg):
        return "--ntk"
    if "the response" in msg or "formula must be" in msg:
        return "FORMULA"
    return None


def _fit(args: argparse.Namespace) -> int:
    df = _read_data(args.data)
    ntk = args.ntk
    if ntk is None:
        raise SystemExit("mixednn fit: error: argument --ntk is required: the network inputs, "
                         "as '~ x2 + x3' or 'x2,x3'")
    if "~" not in ntk:
        ntk = [c.strip() for c in ntk.split(",") if c.strip()]
        if not ntk:
            raise SystemExit("mixednn fit: error: argument --ntk: names no column; give "
                             "'x2,x3' or '~ x2 + x3'")
    try:
        network = MLP(depth=args.depth, activation=args.activation,
                      weight_std=args.weight_std, bias_std=args.bias_std)
    except (ValueError, TypeError) as exc:
        raise _fail(_network_option(str(exc)), exc) from None
    try:
        model = MixedLMNTK.from_formula(args.formula, df, ntk=ntk, network=network)
    except (ValueError, KeyError, TypeError) as exc:
        raise _fail(_model_argument(str(exc.args[0]) if exc.args else str(exc), args),
                    exc) from None
    choice = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if args.choose_kernel:
                choice = choose_kernel(model, reml=not args.ml)
                res = choice.results if args.t_method is None \
                    else choice.fit(t_method=args.t_method)
            else:
                res = model.fit(reml=not args.ml, t_method=args.t_method)
            if args.json:
                # with a chosen kernel the tests of t = 0 use the network's own kernel, fixed
                # before the data chose one (a test on the chosen kernel is anticonservative)
                tests = zero_tests(res if choice is None else choice.start_results,
                                   lr_null=args.lr_null, nsim=args.nsim, seed=args.seed)
        except (ValueError, KeyError, TypeError, NotImplementedError) as exc:
            raise _fail("--choose-kernel" if isinstance(exc, NotImplementedError) else None,
                        exc) from None
    if args.json:
        def num(v):  # JSON has no NaN or infinity
            return float(v) if v is not None and math.isfinite(v) else None

        lo, hi = res.t_conf_int()
        s_lo, s_hi = res.scale_conf_int()
        ci = res.conf_int()
        check = res.auto_check
        out = {
            "method": res.method, "nobs": res.nobs, "rows_dropped": model.data.n_dropped,
            "llf": res.llf, "aic": res.aic, "bic": res.bic, "converged": res.converged,
            "t": res.t, "t_method": res.t_method, "t_reml": res.t_reml,
            "auto_check": None if check is None else check.reason,
            "t_se": None if res.boundary else num(res.t_se), "t_ci": [num(lo), num(hi)],
            "scale": res.scale, "scale_se": res.scale_se, "scale_ci": [num(s_lo), num(s_hi)],
            "edf": res.edf,
            "params": res.params.to_dict(), "bse": {k: num(v) for k, v in res.bse.items()},
            "pvalues": {k: num(v) for k, v in res.pvalues.items()},
            "conf_int": {k: [num(ci.loc[k, 0]), num(ci.loc[k, 1])] for k in ci.index},
            "tests_t0": {rec["test"]: {k: (num(v) if isinstance(v, float) else v)
                                       for k, v in rec.items() if k not in ("test", "label")}
                         for rec in tests},
            "network": (model if choice is None else choice.model).kernel_source.description,
            "warnings": [str(w.message) for w in caught],
        }
        if choice is not None:
            out["kernel_choice"] = {
                "criterion": choice.criterion, "chosen": choice.chosen,
                "candidates": {name: {k: (num(v) if isinstance(v, float) else v)
                                      for k, v in row.items()}
                               for name, row in choice.table.to_dict("index").items()},
                "scales": None if choice.scales is None else choice.scales.to_dict(),
                "tests_t0_kernel": "the network's own kernel, fixed before the choice",
            }
        print(json.dumps(out, indent=2, default=lambda v: v.item() if hasattr(v, "item")
                         else str(v)))
    else:
        if choice is not None:
            print(choice.summary())
            print()
        print(res.summary())
        for w in caught:
            print(f"note: {w.message}")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    import pandas as pd

    with pd.option_context("display.max_colwidth", 70, "display.width", 160):
        print(datasets.list().to_string(index=False))
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


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
    fit.add_argument("--choose-kernel", action="store_true",
                     help="the headline workflow: compare the network's kernel with an ARD "
                          "sin kernel (per-input scales and bias std by REML) by BIC, and fit "
                          "the chosen one (mixednn.hyper.choose_kernel)")
    fit.add_argument("--json", action="store_true",
                     help="print results as JSON, with the coefficient intervals and the "
                          "tests of t = 0")
    fit.add_argument("--lr-null", default="simulate", choices=("simulate", "mixture"),
                     help="null of the likelihood-ratio test of t = 0 in --json: simulated "
                          "exact null (default) or the asymptotic 50:50 chi2 mixture")
    fit.add_argument("--nsim", type=_positive_int, default=2000,
                     help="simulations for --lr-null simulate (default 2000)")
    fit.add_argument("--seed", type=int, default=0,
                     help="seed of those simulations (default 0)")
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
