"""CUDA check of device="auto" and of the RNG forks (run where CUDA exists).

For every survival estimator: device="auto" trains on CUDA (device_ == "cuda",
parameters on the GPU), the CPU and CUDA random states of the caller are the
same before and after an integer-seeded fit, and two fits with the same
integer give identical predictions. Prints one line per estimator, then OK.
"""

import sys

import numpy as np
import pandas as pd
import torch
from sksurv.util import Surv

import multimodal_surv as ms

if not torch.cuda.is_available():
    sys.exit("no CUDA device: run this script on a machine with a GPU")
rng = np.random.default_rng(0)
n = 400
ct, ehr = rng.normal(size=(n, 8)), rng.normal(size=(n, 6))
risk = ct[:, 0] + ehr[:, 0]
time = rng.exponential(np.exp(-risk))
y = Surv.from_arrays(rng.random(n) < 0.8, time)
X = pd.DataFrame(
    np.hstack([ct, ehr]), columns=[f"ct__x{j}" for j in range(8)] + [f"ehr__x{j}" for j in range(6)]
)
ok = True
for cls in (
    ms.DeepSurvival,
    ms.LateFusionSurvival,
    ms.ContrastiveFusionSurvival,
    ms.CrossAttentionFusionSurvival,
    ms.CoAttentionFusionSurvival,
):
    torch.manual_seed(1)
    torch.cuda.manual_seed_all(1)
    cpu_before, cuda_before = torch.get_rng_state(), torch.cuda.get_rng_state()
    model = cls(device="auto", max_epochs=5, random_state=0).fit(X, y)
    same_cpu = torch.equal(torch.get_rng_state(), cpu_before)
    same_cuda = torch.equal(torch.cuda.get_rng_state(), cuda_before)
    on_gpu = next(model.module_.parameters()).device.type == "cuda"
    again = cls(device="auto", max_epochs=5, random_state=0).fit(X, y)
    identical = np.array_equal(model.predict(X), again.predict(X))
    none_a = cls(device="auto", max_epochs=5).fit(X, y).predict(X)
    none_b = cls(device="auto", max_epochs=5).fit(X, y).predict(X)
    fresh = not np.array_equal(none_a, none_b)
    line = (
        f"{cls.__name__}: device_={model.device_} on_gpu={on_gpu} cpu_state_kept={same_cpu} "
        f"cuda_state_kept={same_cuda} int_identical={identical} none_differs={fresh} "
        f"C={model.score(X, y):.3f}"
    )
    print(line, flush=True)
    ok &= model.device_ == "cuda" and on_gpu and same_cpu and same_cuda and fresh
print("OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
