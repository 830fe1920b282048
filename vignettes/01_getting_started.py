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
# # Getting started: a network as a random effect, on bikeshare data
#
# `mixednn` fits a linear mixed model in which the random effect is a neural network
# trained by gradient flow:
#
# $$ y = X\beta + u + \varepsilon, \qquad u \sim N\big(0,\ \sigma^2 (e^{tK} - I)\big),
#    \qquad \varepsilon \sim N(0, \sigma^2 I), $$
#
# so that $\operatorname{Var}(y) = \sigma^2 e^{tK}$. $X\beta$ is an ordinary formula,
# $K$ is the neural tangent kernel (NTK) of a network on a second set of inputs, and the
# best linear unbiased predictor of $u$ is *exactly* the network trained for time $t$ on
# the residuals $y - X\beta$. Training time is a variance component: REML estimates how
# long to train, and $t = 0$ (no training) is an ordinary linear model.
#
# This vignette fits the model to hourly bike rentals, reads the summary, predicts with
# intervals and draws the three diagnostic plots.

# %%
# %matplotlib inline
import os

import numpy as np

import mixednn as mn

FAST = os.environ.get("MIXEDNN_FAST", "") not in ("", "0")  # set by the test suite
N_FIT = 600 if FAST else 2000

# %% [markdown]
# ## The data
#
# Capital Bikeshare, Washington DC, 2011: one row per hour (`mn.datasets.list()` shows the
# bundled data sets; provenance in `data/README.md`). The response is the number of
# riders, `bikers`, which we model on the log scale. The single hour with heavy rain or
# snow is merged with light rain/snow, so that every weather level has data.

# %%
df = mn.datasets.load("bikeshare")
df["weather"] = df["weathersit"].replace({"heavy rain/snow": "light rain/snow"})
train = df.sample(n=N_FIT, random_state=0)
test = df.drop(index=train.index).sample(n=1000, random_state=1)
print(f"{len(df):,} hours in all; fitting on {len(train):,}, checking on {len(test):,} others")
train[["bikers", "hr", "temp", "hum", "windspeed", "workingday", "weather", "season"]].head()

# %% [markdown]
# ## Formula, network, fit
#
# Two formulas describe the model. The first is the fixed part, exactly as in
# `statsmodels` or R: an intercept, working day, weather and season. The second, `ntk=`,
# names the *network inputs*: hour, temperature, humidity and wind speed, standardised to
# mean 0 and sd 1. The network is a fully connected ReLU network with two hidden layers,
# used through its infinite-width NTK (no training of weights is needed to fit the
# model; vignette 4 trains a real one).

# %%
model = mn.MixedLMNTK.from_formula(
    "np.log1p(bikers) ~ workingday + C(weather) + C(season)",
    data=train,
    ntk="~ hr + temp + hum + windspeed",
    network=mn.MLP(depth=2, activation="relu"),
)
res = model.fit()  # REML, with a prediction check; model.fit(reml=False) for ML
print(res.summary())

# %% [markdown]
# ### Reading the summary
#
# * **Fixed effects** are generalised-least-squares estimates at the estimated $t$, with
#   Wald standard errors, $z$ statistics and 95% intervals: they are effects *after* the
#   network has absorbed what hour, temperature, humidity and wind explain. Season
#   effects are on the log scale: $e^{\beta}$ is a multiplicative change in riders.
# * **Training time $t$** is how long gradient flow should run. `fit()` estimates it by
#   REML: a variance component with a profile-likelihood interval (it need not be
#   symmetric) and a standard error from the observed information on $\log t$. Beside it
#   runs a prediction check: when GCV's prediction-error estimate at REML's $t$ is more
#   than 5% above its minimum *and* a parametric bootstrap under the fitted model cannot
#   explain that (p <= 0.01), the summary says so in a "Prediction check" line and names
#   the remedy. `model.fit(t_method="auto")` lets the check act (GCV then chooses $t$);
#   vignette 3 measures what that is worth on held-out hours.
# * **Residual variance** $\sigma^2$ is what the network does not explain.
# * **Effective df** $\sum_i (1 - e^{-t\lambda_i})$ counts how many eigen-directions of the
#   kernel have been learned: a network with millions of weights behaves here like a
#   smoother with a few dozen (at REML's $t$) to a few hundred (at GCV's) degrees of
#   freedom.
# * **Equivalent training** converts $t$ into full-batch gradient-descent steps.

# %%
res_checked = model.fit(t_method="auto")
lo, hi = res.t_conf_int()
print(f"REML: t = {res.t:.4f} (95% profile CI {lo:.4f} to {hi:.4f}); the checked rule "
      f"chooses t by {res_checked.t_method.upper()}: {res_checked.t:.4f}")
print(f"prediction check: {res.auto_check.reason}")
print(f"residual sd = {np.sqrt(res.scale):.3f} on the log scale")
print(f"effective degrees of freedom of the network: {res.edf:.1f} of n = {res.nobs}")
print(f"winter -> summer (season 3) multiplies riders by "
      f"{np.exp(res.params['C(season)[T.3]']):.2f}, other things equal")

# %% [markdown]
# ## How long is that in epochs?
#
# $t$ is measured in *learning rate x steps* of full-batch gradient descent on the summed
# loss $\tfrac12\sum (y - f)^2$. With the usual mean loss $\tfrac1{2n}\sum (y-f)^2$ and
# learning rate `lr`, the same amount of training is $n t / \mathrm{lr}$ steps.

# %%
for lr in (0.1, 1.0, res.reference_lr):
    print(f"lr = {lr:7.3f}: {res.epochs(lr, loss='mean'):10,.0f} full-batch epochs (mean loss)")

# %% [markdown]
# ## Prediction with intervals
#
# `predict` runs the trained network on new inputs, adds the fixed part, and returns
# confidence intervals for the mean or prediction intervals for a new hour. The check on
# held-out hours below compares the mean squared error with the variance of the response
# and counts how often the 95% prediction interval covers the observed value.

# %%
pred = res.predict(test, interval="prediction")
y_test = np.log1p(test["bikers"].to_numpy())
mse = np.mean((y_test - pred["mean"]) ** 2)
cover = np.mean((y_test >= pred["lower"]) & (y_test <= pred["upper"]))
print(f"held-out MSE {mse:.3f} vs variance of y {y_test.var():.3f} "
      f"(R^2 = {1 - mse / y_test.var():.2f}); 95% PI coverage {cover:.1%}")
pred.head()

# %% [markdown]
# ## Three diagnostic plots
#
# **Profile likelihood.** The REML log-likelihood as a function of $t$ (log axis), with
# $\beta$ and $\sigma^2$ profiled out. The dotted line is the untrained model, $t = 0$;
# the shaded band is the 95% profile interval. The distance between the peak and the
# dotted line is half the restricted likelihood-ratio statistic for "should we train at
# all?" (vignette 2). For the checked rule's fit, the green dash-dotted line marks the $t$
# it chose (GCV's, here far to the right of the REML interval).

# %%
res.plot_profile()
res_checked.plot_profile()

# %% [markdown]
# **Spectral loss decorrelation.** Each eigen-direction $i$ of the kernel has an eigenvalue
# $\lambda_i$ (how fast training learns it) and a remaining loss
# $s_i = \tilde y_i^2 e^{-t\lambda_i}$ in the rotated basis. Before training (grey) the
# large-eigenvalue directions hold the signal and their losses rise with $\lambda$. At
# $\hat t$ (blue) the losses are flat around their expectation under the model: the REML
# score equation says exactly that $\sum_i \lambda_i (s_i/\hat\sigma^2 - e_i) = 0$, i.e.
# the remaining loss is uncorrelated with the spectrum. Training longer would start fitting
# noise along the leading directions, which is what the model predicts; on these data
# GCV's longer time predicts held-out hours better all the same (vignette 3). The plot is
# drawn for the REML fit, where the decorrelation holds by construction.

# %%
res.plot_spectrum()

# %% [markdown]
# **Observed vs fitted, residuals vs fitted.** In-sample checks of the kind used for any
# regression. The bands of points at the bottom left are hours with very few riders
# (the count is discrete there); the LOWESS curve shows how much structure is left in
# the residuals.

# %%
res.plot_fit()

# %% [markdown]
# ## Where next
#
# * Vignette 2: *Should I train at all?* -- the score test and the restricted LRT of $t = 0$.
# * Vignette 3: *How long to train?* -- REML stopping against held-out data.
# * Vignette 4: *Training a real network* -- torch, and the NTK prediction of the loss curve.
# * Vignette 5: *Comparing models* -- fixed-effect sets and architectures.
