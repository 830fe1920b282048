# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Comparing models: fixed effects and architectures
#
# The model $y = X\beta + u + \varepsilon$, $\operatorname{Var}(y) = \sigma^2 e^{tK}$, has
# two parts to choose: the fixed-effect formula $X$ and the network behind the kernel
# $K$ (depth, activation). Both are compared with likelihoods, following the rules of
# linear mixed models:
#
# * **Different fixed effects, same network**: fit by **ML** (REML likelihoods of models
#   with different $X$ are not comparable) and use the likelihood-ratio test for nested
#   formulas, $2(\ell_1 - \ell_0) \sim \chi^2_{p_1 - p_0}$ (the variance components are
#   re-estimated under both models and are not on the boundary of the test).
# * **Same fixed effects, different networks**: the models are not nested, so there is no
#   test; compare the **REML** log-likelihoods (equivalently AIC: every kernel has the same
#   two variance parameters, $t$ and $\sigma^2$). Differences of a few units matter; a
#   held-out check below puts the ranking in perspective.

# %%
# %matplotlib inline
import os
import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import mixednn as mn

FAST = os.environ.get("MIXEDNN_FAST", "") not in ("", "0")  # set by the test suite
N_FIT = 500 if FAST else 2000

df = mn.datasets.load("bikeshare")
df["weather"] = df["weathersit"].replace({"heavy rain/snow": "light rain/snow"})
train = df.sample(n=N_FIT, random_state=0)
test = df.drop(index=train.index).sample(n=1500, random_state=1)
NTK = "~ hr + temp + hum + windspeed"
y_test = np.log1p(test["bikers"].to_numpy())


def fit(formula, network=None, reml=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mn.BoundaryFitWarning)
        model = mn.MixedLMNTK.from_formula(formula, train, ntk=NTK,
                                           network=network or mn.MLP(depth=2))
        # likelihood-ratio tests compare maximised likelihoods: the likelihood's own t
        return model.fit(reml=reml, t_method="reml" if reml else "ml")

# %% [markdown]
# ## Fixed-effect sets (ML, likelihood-ratio tests)
#
# Three nested formulas for log riders, all with the same network on hour, temperature,
# humidity and wind: intercept only; plus working day; plus weather and season.

# %%
formulas = {
    "M0: 1": "np.log1p(bikers) ~ 1",
    "M1: + workingday": "np.log1p(bikers) ~ workingday",
    "M2: + weather + season": "np.log1p(bikers) ~ workingday + C(weather) + C(season)",
}
fits = {name: fit(f) for name, f in formulas.items()}  # REML fits, as one would have them
with warnings.catch_warnings():
    warnings.simplefilter("ignore", mn.MLRefitWarning)  # the refit is announced below
    fe_table = mn.anova(*fits.values(), names=list(fits))
print(fe_table)

# %% [markdown]
# **Reading the table.** `mn.anova` follows R's `anova` for mixed models: since the
# fixed effects differ, it refits every model by ML (and says so), sorts them by the
# number of parameters `Df` and tests each row against the row above:
# `Chisq` $= 2(\ell_1 - \ell_0)$ on `Chi Df` degrees of freedom. Working day adds
# little once the network sees the hour (its effect is largely a different daily
# profile, which a fixed shift cannot express); weather and season together are a
# clear improvement. AIC and BIC are on the ML scale here and so are comparable across
# formulas.
#
# The same function compares a network model with the plain linear model (`t = 0`,
# `res.null_fit()` is its OLS fit): then $t = 0$ is on the boundary and the p-value comes
# from the exact simulated null, never from a naive $\chi^2$.

# %%
full = fits["M2: + weather + season"]
print(mn.anova(full.null_fit(), full, names=["OLS (t = 0)", "network"],
               nsim=500 if FAST else 10_000, seed=1))

# %% [markdown]
# ## Architectures (REML, same fixed effects)
#
# Depth 1 to 4, ReLU, GELU and erf activations, each as an infinite-width NTK. Deeper
# ReLU kernels are rougher (their eigenvalues decay more slowly), erf kernels are
# smooth and saturating.

# %%
fixed = formulas["M2: + weather + season"]
rows, arch_fits = [], {}
for act in ["relu", "gelu", "erf"]:
    for depth in [1, 2, 3, 4]:
        r = fit(fixed, network=mn.MLP(depth=depth, activation=act))
        pred = r.predict(test)
        rows.append({"activation": act, "depth": depth, "t_hat": r.t, "edf": r.edf,
                     "REML logLik": r.llf, "held-out MSE": np.mean((y_test - pred) ** 2)})
        arch_fits[f"{act}, depth {depth}"] = r
arch = pd.DataFrame(rows)
arch["delta logLik"] = arch["REML logLik"] - arch["REML logLik"].max()
arch.sort_values("REML logLik", ascending=False).round(4)

# %% [markdown]
# **Reading the table.** `delta logLik` is each network's REML log-likelihood minus the
# best one; with the same number of variance parameters it is also minus half the AIC
# difference. Rank the architectures by it, and read `edf` (effective degrees of
# freedom of the trained network) as model complexity: REML trains each network for a
# different time $\hat t$, deeper ReLU networks for longer. The held-out mean squared
# error, on hours the fit never saw, agrees on the big picture: the smooth erf kernels
# learn only a handful of effective degrees of freedom and are clearly worse by both
# criteria. Differences of one or two log-likelihood units (among the ReLU and GELU
# depths) are within noise, and held-out error need not order them the same way.

# %% [markdown]
# `mn.anova` gives the same comparison in its standard layout. With the same fixed effects
# everywhere it keeps the REML fits; the networks are not nested, so it reports AIC and
# BIC and leaves the test columns empty (the notes say why).

# %%
print(mn.anova(*[arch_fits[k] for k in ("relu, depth 1", "relu, depth 2", "gelu, depth 2",
                                        "erf, depth 2")],
               names=["relu1", "relu2", "gelu2", "erf2"]))

# %%
fig = Figure(figsize=(10, 4), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
for act, g in arch.groupby("activation"):
    ax1.plot(g["depth"], g["REML logLik"], "o-", label=act)
    ax2.plot(g["depth"], g["held-out MSE"], "o-", label=act)
ax1.set(xlabel="depth", ylabel="REML log-likelihood", title="Likelihood (higher is better)")
ax2.set(xlabel="depth", ylabel="held-out MSE", title="Held-out error (lower is better)")
for ax in (ax1, ax2):
    ax.set_xticks([1, 2, 3, 4])
    ax.legend()
fig

# %% [markdown]
# ## Kernels with estimated hyperparameters: `choose_kernel`
#
# A kernel can also have hyperparameters estimated by REML: one scale per network input
# (automatic relevance determination) and the bias std. `mn.hyper.choose_kernel` fits two
# candidates on the same rows with the same fixed effects: the model's own kernel, and a
# one-layer `sin` network. The `sin` NTK is a Gaussian (RBF) kernel plus a smooth
# non-stationary part, with its $d + 1$ hyperparameters estimated. The candidate with the
# smaller BIC wins, so the estimated kernel has to earn its extra parameters. The test of
# $t = 0$ stays with the model's own kernel, fixed before the data were seen.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore", mn.BoundaryFitWarning)
    own = mn.MixedLMNTK.from_formula("np.log1p(bikers) ~ workingday + C(season)", train,
                                     ntk="~ hr + temp + hum + windspeed + workingday",
                                     network=mn.MLP(depth=2))
    choice = mn.hyper.choose_kernel(own)
print(choice.table[["n_params", "t", "llf", "aic", "bic", "chosen"]].round(3))
print(choice.scales.round(3) if choice.scales is not None else "the model's own kernel won")
for name, res in (("own kernel", choice.start_results), ("chosen kernel", choice.results)):
    err = np.mean((res.predict(test) - y_test) ** 2)
    print(f"{name:>14}: held-out MSE {err:.3f}")
print(choice.score_test())

# %% [markdown]
# On these hours BIC prefers the estimated kernel by a wide margin. The scales say which
# inputs it uses, and how sharply: hour and working day dominate, and the kernel learns
# their interaction (the commuter peaks exist on working days only). The held-out error
# falls accordingly. `docs/benchmarks.md` runs the same comparison on ten data sets,
# against GAMs and Gaussian processes.

# %% [markdown]
# ## Take-aways
#
# * Fixed effects: ML fits and likelihood-ratio tests, as for any mixed model.
# * Networks: REML log-likelihoods (or AIC) at fixed $X$; there is no test between
#   non-nested kernels, but the likelihood orders them the way held-out error does.
# * The number that makes architectures comparable is the effective degrees of freedom
#   at $\hat t$, not the number of weights.
# * Estimated kernel hyperparameters enter the comparison through their number (BIC in
#   `choose_kernel`); test $t = 0$ with the kernel fixed in advance.
