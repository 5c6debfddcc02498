"""DeepSurvival on a real cohort, next to scikit-survival's Cox model.
===================================================================

A Pipeline(StandardScaler, DeepSurvival) is tuned with GridSearchCV and
scored with Harrell's C and the time-dependent Brier score, the same way as
any scikit-survival estimator.

Run: ``python examples/deep_survival.py`` (``--quick`` for a 20-second run).
"""

import argparse

import numpy as np
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.column import encode_categorical
from sksurv.datasets import load_whas500
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import integrated_brier_score

from multimodal_surv import DeepSurvival

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--quick", action="store_true", help="fewer epochs and a smaller grid")
args = parser.parse_args()

X, y = load_whas500()
X = encode_categorical(X).astype(float)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, random_state=0, stratify=y["fstat"]
)

model = make_pipeline(StandardScaler(), DeepSurvival(random_state=0))
grid = {"deepsurvival__dropout": [0.1, 0.3]}
if not args.quick:
    grid["deepsurvival__hidden_units"] = [(32,), (64,), (64, 64)]
search = GridSearchCV(model, grid, cv=3).fit(X_train, y_train)
cox = make_pipeline(StandardScaler(), CoxPHSurvivalAnalysis(alpha=0.1)).fit(X_train, y_train)

times = np.percentile(y_test["lenfol"][y_test["fstat"]], [20, 40, 60, 80])
for name, fitted in [("DeepSurvival (tuned)", search.best_estimator_), ("CoxPH", cox)]:
    surv = np.vstack([fn(times) for fn in fitted.predict_survival_function(X_test)])
    ibs = integrated_brier_score(y_train, y_test, surv, times)
    print(f"{name:22s} C-index {fitted.score(X_test, y_test):.3f}   integrated Brier {ibs:.3f}")
print("best parameters:", search.best_params_)
