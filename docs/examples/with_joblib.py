"""joblib (and so scikit-learn) runs on crew workers through the "crew" backend (needs scikit-learn)."""

# --8<-- [start:joblib]
import joblib
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

import crew_core.joblib  # noqa: F401  registers the joblib backend "crew"
from crew_core import Crew

X, y = load_iris(return_X_y=True)
with Crew(store="local", worker_classes=["subprocess"]) as crew:
    crew.recruit(workers=2)
    with joblib.parallel_config(backend="crew", crew=crew):  # or store=, worker_class=, tags=
        search = GridSearchCV(SVC(), {"C": [0.1, 1, 10]}, cv=3, n_jobs=2).fit(X, y)  # fits on crew workers
print(search.best_params_)
# --8<-- [end:joblib]
