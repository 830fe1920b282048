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
# # A panel: group random effects beside the network
#
# The wage panel follows 545 men over 8 years (1980-87). Repeated measures call for a
# random intercept per man, written as in lme4: `(1 | nr)`. The network sits beside it:
#
# $$y = X\beta + Zb + u + \varepsilon,\qquad b \sim N(0, \sigma^2\theta^2 I),\quad
# \operatorname{Var}(y) = \sigma^2\left(e^{tK} + \theta^2 ZZ^\top\right).$$
#
# The network's part $u$ is still the network trained by gradient flow for time $t$, now
# on what the fixed effects *and the men's own levels* leave: $y - X\hat\beta - Z\hat b$.
# So $t$ answers "how much training is left once each man's level is known?". We fit
# three models -- the random intercept alone (lme4's model), the network alone, and
# both -- and compare them with likelihood-ratio tests.

# %%
# %matplotlib inline
import os
import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import mixednn as mn

FAST = os.environ.get("MIXEDNN_FAST", "") not in ("", "0")  # set by the test suite
wage = mn.datasets.load("wage_panel")
if FAST:  # a subsample of men (all 8 years of each)
    men = np.random.default_rng(0).choice(wage["nr"].unique(), size=60, replace=False)
    wage = wage[wage["nr"].isin(men)]
FIXED = "lwage ~ educ + black + hisp + union + married"
NTK = ["exper", "hours"]
NET = mn.MLP(depth=2)
print(f"{len(wage)} rows, {wage['nr'].nunique()} men")

# %% [markdown]
# ## 1. The random intercept alone: lme4's model
#
# Without `ntk=` the model has no network and is exactly lme4's
# `lmer(lwage ~ educ + black + hisp + union + married + (1 | nr))` (REML): the test suite
# checks logLik, theta, the fixed effects, their SEs, sigma and the conditional modes
# against lme4 to 1e-6.

# %%
groups_only = mn.MixedLMNTK.from_formula(FIXED + " + (1 | nr)", wage).fit()
print(groups_only.summary())

# %% [markdown]
# ## 2. The network alone, and both together

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore", mn.BoundaryFitWarning)
    network_only = mn.MixedLMNTK.from_formula(FIXED, wage, ntk=NTK, network=NET).fit()
    both = mn.MixedLMNTK.from_formula(FIXED + " + (1 | nr)", wage, ntk=NTK,
                                      network=NET).fit()
print(both.summary())

# %% [markdown]
# The variance-components table has lme4's layout -- the group, the effect, its variance
# and standard deviation -- with the network's training time as a row of its own. Set
# beside the two single-component fits: with each man's persistent level carried by the
# random intercept, the network is trained only on what is left, and the residual
# variance falls well below that of either model alone.

# %%
print(pd.DataFrame({
    "t": [np.nan, network_only.t, both.t],
    "man variance": [groups_only.vcomp["Variance"].iloc[0], np.nan,
                     both.vcomp["Variance"].iloc[0]],
    "residual variance": [groups_only.scale, network_only.scale, both.scale],
    "REML logLik": [groups_only.llf, network_only.llf, both.llf],
}, index=["(1 | nr) only", "network only", "both"]).round(4))

# %% [markdown]
# ## 3. Likelihood-ratio tests
#
# All three models share the fixed effects, so their REML likelihoods are comparable.
# `(1 | nr)` and the network are each nested in "both"; a variance (or $t$) tested at 0 is
# on the boundary of its range, so the null is the mixture
# $\tfrac12\chi^2_0 + \tfrac12\chi^2_1$ (Self and Liang; Stram and Lee), not $\chi^2_1$.
# "(1 | nr) only" and "network only" are not nested: compare their AIC.

# %%
tab = mn.anova(groups_only, both, names=["groups", "groups + network"])
print(tab)
tab = mn.anova(network_only, both, names=["network", "network + groups"])
print(tab)

# %% [markdown]
# The score test of $t = 0$ with the random intercept present asks whether the network
# adds anything beyond each man's level. Its null distribution is exact given the
# intercept variance of the null fit (the groups alone); the restricted LRT simulates
# the null, re-estimating that variance in every draw.

# %%
print(both.score_test())
print(both.lr_test(nsim=19 if FAST else 99, seed=1))

# %% [markdown]
# ## 4. What the network learns beyond the men's levels
#
# The conditional modes of the random intercepts (lme4's `ranef`) are each man's level;
# the network's part is a smooth function of experience and hours worked, fitted on what
# the men's levels leave.

# %%
modes = both.ranef()["nr"]
print(modes.describe().round(3))
part = pd.Series(both.network_part, index=both.fittedvalues.index)
used = wage.loc[part.index]
fig = Figure(figsize=(9, 3.4))
ax1, ax2 = fig.subplots(1, 2)
ax1.hist(modes["(Intercept)"], bins=30, color="0.6")
ax1.set_xlabel("conditional mode of the man's intercept")
ax1.set_ylabel("men")
ax2.scatter(used["exper"], part, s=4, alpha=0.4)
ax2.set_xlabel("years of experience")
ax2.set_ylabel("network part of log wage")
fig.tight_layout()
fig

# %% [markdown]
# ## 5. Prediction for known and new men
#
# `predict` uses a known man's conditional mode; a man not in the data gets the population
# level (`allow_new_levels=True`), and his intercept variance widens the prediction
# interval. `re_form="~0"` gives the population-level mean for everyone (its interval
# covers the fixed effects, the network and the noise, not a man's level).

# %%
known = wage.iloc[[0]]
new = known.assign(nr=-1)
print(pd.concat({
    "known man": both.predict(known, interval="prediction"),
    "new man": both.predict(new, allow_new_levels=True, interval="prediction"),
    "population level": both.predict(known, re_form="~0", interval="prediction"),
}).round(3))
