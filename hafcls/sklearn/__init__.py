"""scikit-learn interface: a hierarchy-aware classifier on embeddings, and hierarchical scorers.

>>> from hafcls.sklearn import HierarchyAwareClassifier, hierarchical_scorer   # doctest: +SKIP
>>> clf = HierarchyAwareClassifier(hierarchy, method="haframe", random_state=0)
>>> clf.fit(X_train, y_train).score(X_test, y_test)                          # top-1
>>> clf.predict_node(X_test, threshold=0.8)                                 # hedged node ids
>>> GridSearchCV(clf, {"method": ["ce", "haframe"]}, scoring=hierarchical_scorer("hierdist@5"))
"""

from hafcls.sklearn.estimator import HierarchyAwareClassifier
from hafcls.sklearn.scoring import METRICS, hierarchical_scorer

__all__ = ["METRICS", "HierarchyAwareClassifier", "hierarchical_scorer"]
