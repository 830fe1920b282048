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
# # Training a real network: the NTK prediction next to the real loss curve
#
# The mixed model
#
# $$ y = X\beta + u + \varepsilon, \qquad \operatorname{Var}(y) = \sigma^2 e^{tK}, $$
#
# rests on one fact: a wide network trained by gradient descent on the residual target
# $r = y - X\beta$ moves its training predictions as $f_t = (I - e^{-tK})\,r$, with $K$ its
# neural tangent kernel. Here we train an actual torch network and check that fact:
# the training and held-out losses predicted from the kernel, next to the losses of the
# real network step by step, with REML's stopping time marked.

# %%
# %matplotlib inline
import os

import numpy as np
import torch

import mixednn as mn

FAST = os.environ.get("MIXEDNN_FAST", "") not in ("", "0")  # set by the test suite
N_FIT = 250 if FAST else 1000
WIDTH = 256 if FAST else 1024
STOP_MULTIPLE = 4 if FAST else 10  # train to this many times the REML stopping step
torch.set_num_threads(1)  # a small network trains fastest on one thread

# %% [markdown]
# ## A finite network and its kernel
#
# `mn.MLP(depth=2, width=m)` is a two-hidden-layer ReLU network of width $m$ in the NTK
# parameterisation: each layer computes $\frac{1}{\sqrt{\text{fan-in}}} W h$ with
# $W_{jk} \sim N(0, 1)$, no biases, a linear read-out -- the same network whose
# infinite-width kernel `mn.MLP(depth=2)` is. With a finite width, `mixednn` builds the torch
# network (seeded) and uses its *empirical* NTK $K = JJ^\top$ (the Jacobian of the outputs
# with respect to all weights at initialisation): the exact training operator of the
# linearised network. The network's initial output is the offset $f_0$. Any
# `torch.nn.Module` with one output per row can be passed as `network=` instead.

# %%
df = mn.datasets.load("bikeshare")
df["weather"] = df["weathersit"].replace({"heavy rain/snow": "light rain/snow"})
train = df.sample(n=N_FIT, random_state=0)
test = df.drop(index=train.index).sample(n=1000, random_state=1)
FORMULA = "np.log1p(bikers) ~ workingday + C(weather) + C(season)"
INPUTS = "~ hr + temp + hum + windspeed"

res = mn.MixedLMNTK.from_formula(FORMULA, train, ntk=INPUTS, network=mn.MLP(
    depth=2, activation="relu", width=WIDTH)).fit(t_method="reml")
res_inf = mn.MixedLMNTK.from_formula(FORMULA, train, ntk=INPUTS, network=mn.MLP(
    depth=2, activation="relu")).fit(t_method="reml")
lr = res.reference_lr  # n / lambda_max: half the largest stable full-batch learning rate
print(res.model.kernel_source.description)
print(f"REML t_hat: this network {res.t:.4f}, its infinite-width limit {res_inf.t:.4f}")
print(f"at lr = {lr:.3f} on the mean loss, t_hat is {res.epochs(lr):.0f} full-batch epochs")

# %% [markdown]
# The two estimates of $t$ are close: at this width the network's kernel is near its
# infinite-width limit, so the analytic kernel (cheap, no torch) already says how long
# this network should be trained.
#
# ## Train it, and compare with the kernel's prediction
#
# `res.train(lr, ...)` trains a copy of the network by full-batch gradient descent on the
# residual target $y - X\hat\beta$ and records its losses next to the losses the kernel
# predicts for the same steps, computed in closed form from one eigendecomposition. We
# train to several times REML's stopping step and pass held-out hours as `test_data`.

# %%
stop = int(round(res.epochs(lr)))  # the REML stopping step
path = res.train(lr, steps=STOP_MULTIPLE * stop, test_data=test)
print(path)
frame = path.to_frame()
frame[frame["step"].isin([0, stop, frame["step"].max()])].round(4)

# %%
path.plot(logy=True)

# %%
gap = np.max(np.abs(frame["train_loss"] - frame["train_loss_ntk"]) / frame["train_loss_ntk"])
print(f"largest relative gap between the real and the predicted training loss: {gap:.1%}")
print(f"learned function at the REML stop, network vs kernel: relative RMS difference "
      f"{path.agreement:.3f} (training rows), {path.agreement_test:.3f} (held-out rows)")
at_stop = frame.loc[frame["step"] == stop, "test_loss"].item()
print(f"held-out MSE at the REML stop {at_stop:.4f}; "
      f"lowest along the path {frame['test_loss'].min():.4f}")

# %% [markdown]
# **Reading the table, the plot and the numbers.** The table shows step 0, REML's stopping
# step and the last step: mean squared errors of the real network (`train_loss`,
# `test_loss`), the kernel's prediction for the same discrete steps (`*_ntk`) and the
# gradient-flow path of the mixed model (`*_flow`). In the plot, circles are the real network, solid lines the
# kernel's prediction for discrete gradient descent, dotted lines the gradient-flow path
# of the mixed model; the dashed line is REML's stopping step. Real and predicted losses
# agree closely on both the training and the held-out rows, and the functions learned by
# the network and by the kernel at the stopping step differ by a few per cent: at this
# width the network is in the kernel regime, so the mixed model describes its training,
# and REML's $\hat t$ is a statement about *this* network's epochs. The remaining gap is
# the finite-width effect (the network's kernel moves a little during training); it
# shrinks as the width grows. After the REML stop the training loss keeps falling while
# the held-out loss flattens: the trade-off that REML resolves from the training data
# alone (vignette 3 compares it with the held-out oracle).

# %% [markdown]
# ## Take-aways
#
# * $t$ converts to epochs as $n t / \mathrm{lr}$ for the mean loss (`res.epochs(lr)`).
# * `res.train(lr)` trains the real network for the REML time and shows the kernel's
#   prediction of the whole loss curve, training and held-out, next to it.
# * For a wide network the infinite-width kernel (`mn.MLP`) gives nearly the same $\hat t$
#   without any torch computation.
