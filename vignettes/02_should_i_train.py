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
# # Should I train at all? Testing $t = 0$
#
# In the model
#
# $$ y = X\beta + u + \varepsilon, \qquad \operatorname{Var}(y) = \sigma^2 e^{tK}, $$
#
# training time $t$ is a variance component, and $t = 0$ is the untrained network: then
# $\operatorname{Var}(y) = \sigma^2 I$ and the model is ordinary least squares on the
# formula. "Is the network worth training?" is the test of $H_0: t = 0$, a variance
# component on the boundary of its parameter space. Two tests (`docs/model.md` §3):
#
# * **Score test.** With OLS residuals $r_0$, the statistic
#   $Q = r_0^\top K r_0 / r_0^\top r_0$ asks whether the residuals line up with the
#   kernel's leading directions. Its null distribution is *exact* (a ratio of quadratic
#   forms in Gaussian errors, free of $\beta$ and $\sigma^2$) and is computed by numerical
#   inversion of its characteristic function. Only the null model needs to be fitted.
# * **Restricted likelihood-ratio test (RLRT).** $2[\ell_R(\hat t) - \ell_R(0)]$. Because
#   $t = 0$ is on the boundary, its asymptotic null is the 50:50 mixture of a point mass
#   at 0 and $\chi^2_1$, not $\chi^2_1$; its exact null can be simulated cheaply.
#
# We test on three real data sets -- one where the network clearly helps, one borderline,
# one where it cannot help -- and then check both tests on data simulated under $H_0$.

# %%
# %matplotlib inline
import os
import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

import mixednn as mn
from mixednn.chi2sums import projected_ratio_sf
from mixednn.lrnull import simulate_lr_null
from mixednn.profile import SpectralProfile

FAST = os.environ.get("MIXEDNN_FAST", "") not in ("", "0")  # set by the test suite
N_BIKES = 400 if FAST else 2000
N_SIM = 40 if FAST else 1000  # null data sets for the score test's level check
N_NULL = 1000 if FAST else 10_000  # simulated draws of the RLRT's exact null
rng = np.random.default_rng(2026)

# %% [markdown]
# ## The two tests in the package
#
# `res.score_test()` computes $Q$ from the fit's eigendecomposition $K = U\Lambda U^\top$ (in
# the rotated basis the OLS residuals are $\tilde r_0 = U^\top r_0$ and
# $Q = \sum_i \lambda_i \tilde r_{0i}^2 / \sum_i \tilde r_{0i}^2$) and its exact p-value
# $P\big(\sum_j (\nu_j - Q)\chi^2_{1,j} > 0\big)$, $\nu_j$ the eigenvalues of
# $(I-H)K(I-H)$, by Imhof's integral. `res.lr_test()` computes the RLRT and, by default,
# its exact null by simulation (`nsim` draws); the mixture p-value is reported beside it.

# %%
def tests_of_t0(res):
    """Score test (exact null) and RLRT (simulated exact null, and the mixture)."""
    score = res.score_test()
    rlrt = res.lr_test(nsim=N_NULL, seed=1)
    return {"t_hat": res.t, "Q": score.statistic, "score p (exact)": score.pvalue,
            "RLRT": rlrt.statistic, "RLRT p (simulated)": rlrt.pvalue,
            "RLRT p (mixture)": rlrt.details["mixture p-value"]}


def fit_quietly(formula, data, ntk, network=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mn.BoundaryFitWarning)  # t_hat = 0 is an answer here
        warnings.simplefilter("ignore", mn.KernelClippedWarning)  # rounding in tied inputs
        return mn.MixedLMNTK.from_formula(formula, data, ntk=ntk, network=network).fit()

# %% [markdown]
# ## Three real data sets
#
# * **Bikeshare**: log riders on working day, weather and season, network on hour,
#   temperature, humidity and wind. Hour of day alone is a strong nonlinear signal.
# * **Auto MPG**: fuel economy on horsepower and weight, network on acceleration only.
#   Does acceleration carry anything beyond horsepower and weight?
# * **Penguins**: body mass on species and sex, network on the *year* of measurement
#   (2007-2009). Nothing to learn is expected.

# %%
bikes = mn.datasets.load("bikeshare").sample(n=N_BIKES, random_state=0)
bikes["weather"] = bikes["weathersit"].replace({"heavy rain/snow": "light rain/snow"})
cases = {
    "bikeshare": fit_quietly("np.log1p(bikers) ~ workingday + C(weather) + C(season)", bikes,
                             "~ hr + temp + hum + windspeed"),
    "auto": fit_quietly("mpg ~ horsepower + weight", mn.datasets.load("auto"), "~ acceleration"),
    "penguins": fit_quietly("body_mass_g ~ species + sex", mn.datasets.load("penguins"),
                            "~ year"),
}
table = pd.DataFrame({k: tests_of_t0(r) for k, r in cases.items()}).T
table.insert(0, "n", [r.nobs for r in cases.values()])
table

# %% [markdown]
# **Reading the table.** `t_hat` is the REML training time; `Q` the score statistic;
# the p-values test $H_0: t = 0$. A simulated p-value cannot be smaller than
# $1/(\text{nsim} + 1)$; the mixture p-value shows how far in the tail the statistic is.
#
# * Bikeshare: both p-values are essentially zero -- the network on hour and weather
#   explains far more than the fixed effects. Train it.
# * Auto: both tests reject at the 5% level, less emphatically. Acceleration carries some
#   information about fuel economy beyond horsepower and weight, and REML trains only a
#   little ($\hat t$ is small, the network has few effective degrees of freedom).
# * Penguins: REML puts $\hat t$ on the boundary, $\hat t = 0$; the RLRT is exactly 0
#   and the score p-value is large. The year of measurement adds nothing to species and
#   sex: do not train.
#
# The score test needs only the null fit and its p-value is exact at any $n$; the RLRT
# needs the full fit, and its simulated null is exact too. The two tests answer the same
# question with different power against different alternatives, so near a threshold
# report both. Each test prints as a small table; here the borderline case:

# %%
res_auto = cases["auto"]
print(res_auto.score_test())
print()
print(res_auto.lr_test(nsim=N_NULL, seed=1))

# %% [markdown]
# ## Do the tests hold their level? A null simulation
#
# Keep the bikeshare design and network inputs and simulate responses under $H_0$. Both
# statistics depend on $y$ only through $(I - H)y / \sigma$, so in the rotated basis it is
# enough to draw $\tilde y \sim N(0, I)$ -- no new kernel or decomposition. For the score
# test we compute the exact p-value of each of `N_SIM` null data sets; for the RLRT,
# `simulate_lr_null` draws its exact null (this is what `res.lr_test()` uses) and we
# compare it with the asymptotic mixture.

# %%
res_bikes = cases["bikeshare"]
prof = res_bikes.model.profile
p_score_null = []
for _ in range(N_SIM):
    y_sim = rng.standard_normal(prof.nobs)
    r0 = y_sim - prof.X_rot @ SpectralProfile(prof.lam, y_sim, prof.X_rot, prof.trace,
                                              prof.nobs).point(0.0).beta
    Q = float(np.sum(prof.lam * r0**2) / np.sum(r0**2))
    p_score_null.append(projected_ratio_sf(Q, prof.lam, prof.X_rot).pvalue)
p_score_null = np.array(p_score_null)
rlrt_null = simulate_lr_null(res_bikes, nsim=N_NULL, seed=2)
summary = pd.Series({
    "score test: null data sets": N_SIM,
    "score test: rejection rate at 5%": np.mean(p_score_null < 0.05),
    "RLRT: simulated draws": N_NULL,
    "RLRT: share with t_hat = 0 (mixture says 0.5)": np.mean(rlrt_null <= 1e-10),
    "RLRT: simulated 95% point (mixture: 2.71)": np.quantile(rlrt_null, 0.95),
    "RLRT: rejection rate of the mixture test at 5%": np.mean(rlrt_null > 2.7055),
})
summary.round(3)

# %% [markdown]
# **Reading the simulation.** The score test should reject 5% of the null data sets, up to
# Monte Carlo error (standard error $\sqrt{0.05 \cdot 0.95 / N}$, about 0.007 for
# $N = 1000$ and 0.034 for the 40 data sets of the fast mode); `docs/tests.md` reports a
# larger size and power study of all the tests. For the RLRT, the share of null fits on the boundary $\hat t = 0$ and the
# simulated 95% point show how good the 50:50 mixture is for this design; where the
# simulated point is below 2.71 the mixture test is conservative. The simulated null is
# free of nuisance parameters, which is why `res.lr_test()` uses it by default.
#
# On the left, score-test p-values under $H_0$ should be uniform; on the right, the
# ordered positive RLRT values against $\chi^2_1$ quantiles should follow the diagonal if
# the mixture is right.

# %%
fig = Figure(figsize=(10, 4), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
ax1.hist(p_score_null, bins=10, range=(0, 1), color="#1f5a99", alpha=0.8, edgecolor="white")
ax1.axhline(N_SIM / 10, color="#d2691e", lw=1.5, label="uniform")
ax1.set(xlabel="score-test p-value", ylabel="count",
        title=f"Score test under $H_0$ ({N_SIM} data sets)")
ax1.legend()
pos = np.sort(rlrt_null[rlrt_null > 1e-10])
if pos.size:
    qq = stats.chi2.ppf((np.arange(1, pos.size + 1) - 0.5) / pos.size, 1)
    ax2.plot(qq, pos, "o", ms=2.5, color="#1f5a99")
    top = max(qq.max(), pos.max())
    ax2.plot([0, top], [0, top], color="#d2691e", lw=1.2)
ax2.set(xlabel="$\\chi^2_1$ quantile", ylabel="positive RLRT values",
        title=f"RLRT under $H_0$: positive part vs $\\chi^2_1$ ({N_NULL} draws)")
fig

# %% [markdown]
# ## Take-aways
#
# * Test $t = 0$ before interpreting a trained network: the score test needs only the
#   ordinary linear model and has an exact p-value.
# * For the RLRT use the simulated null (the default of `res.lr_test()`) or the mixture,
#   never $\chi^2_1$, which doubles the mixture p-value.
# * A boundary fit ($\hat t = 0$) is a legitimate answer, not a failure: the data say the
#   network inputs add nothing to the formula.
