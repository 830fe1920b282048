"""Write ``pinned_outputs.json``: the numerical outputs of the fits in ``cases.py``.

The pinned numbers are the reference against which ``tests/test_pinned_outputs.py``
checks a refactor.  Generate them from a known commit, not from a working tree in
flux, e.g.::

    git archive HEAD | tar -x -C /tmp/pin_base          # (an empty /tmp/pin_base)
    PYTHONPATH=/tmp/pin_base python tests/pinned/make_pinned.py \
        --source-commit "$(git rev-parse HEAD)"

The script prints ``mixednn.__file__`` and stores it in the file's ``meta``; check that it
is the snapshot's copy.  Only regenerate when a change of the numbers is intended, and
say so in the commit message.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy  # noqa: E402
import torch  # noqa: E402

import mixednn as mn  # noqa: E402

import cases  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "pinned_outputs.json"))
    ap.add_argument("--source-commit", default=None,
                    help="the commit the imported mixednn comes from (recorded in meta)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"mixednn imported from {mn.__file__}")
    out: dict = {
        "meta": {
            "source_commit": args.source_commit,
            "mixednn_file": mn.__file__,
            "mixednn_version": mn.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
            "torch": torch.__version__,
            "n": cases.N, "lr_nsim": cases.LR_NSIM, "lr_seed": cases.LR_SEED,
            "csv_chunksize": cases.CSV_CHUNKSIZE, "frames": cases.FRAMES,
            "formula": cases.FORMULA, "ntk": cases.NTK,
        },
        "cases": {},
    }
    with tempfile.TemporaryDirectory() as workdir:
        for name, case in cases.CASES.items():
            t0 = time.perf_counter()
            rec = cases.run_case(name, workdir)
            rec = {"kind": case.kind, "frame": case.frame, **rec}
            out["cases"][name] = rec
            raised = [k for k, v in rec.items() if isinstance(v, dict) and "raises" in v]
            print(f"{name:34s} {time.perf_counter() - t0:5.2f} s  t = {rec['t']:.6g} "
                  f"({rec['t_method']})" + (f"  RAISES: {', '.join(raised)}" if raised else ""))
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1, allow_nan=False)
        fh.write("\n")
    print(f"wrote {args.out} ({len(out['cases'])} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
