"""``HierarchyAwareClassifier``: a hafcls head + loss fitted on embeddings, scikit-learn style.

The estimator takes feature arrays (embeddings from any model: CLIP, DINOv2, a timm model's
pooled features) and labels that are class ids of an explicitly given hierarchy, and trains the
head and loss of one method of the registry (``ce``, ``haframe``, ``etf-dr``, ``hug-*``,
``soft-labels``, ``hxe``, ``ebv``) with mini-batch AdamW or SGD on tensors.

Classes of the hierarchy without training data: the head always covers every class of the
hierarchy (a frame is built for the whole tree, so the geometry of the seen classes is the
same whichever subset has data), but, as in scikit-learn, ``classes_`` holds the labels seen in
``y`` and ``predict``, ``predict_proba``, ``decision_function`` only use those columns (the
softmax is renormalised over them; unseen classes get no probability mass). ``all_classes_``
and :meth:`~HierarchyAwareClassifier.predict_proba_all` give the model's softmax over every
hierarchy class.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from hafcls.errors import HafclsError
from hafcls.sklearn._build import _build_head_and_loss

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def validate_data(estimator, X="no_validation", y="no_validation", reset=True, **kw):
        return estimator._validate_data(X, y, reset=reset, **kw)

OPTIMIZERS = ("adamw", "sgd")
TRANSFORMS = ("prelu", "none")
_PREDICT_ROWS = 1 << 15  # rows per forward pass at prediction time (bounded memory)
_DTYPES = (np.float64, np.float32)


class HierarchyAwareClassifier(ClassifierMixin, BaseEstimator):
    """Fit a hierarchy-aware head (HAFrame, ETF, HUG, EBV, linear) on feature arrays.

    Parameters
    ----------
    hierarchy:
        The label tree: a :class:`hafcls.hierarchy.Hierarchy`, a shipped hierarchy's name or
        the path of a hierarchy file. Labels ``y`` are its class ids (``str(label)`` must be a
        class id: ``3`` and ``"3"`` are the same class).
    method:
        A method of :func:`hafcls.losses.available_methods` (head + loss + published defaults).
    method_options:
        Head or loss options of the method (``Method.with_options``), e.g. ``{"gamma": 1,
        "alpha": 0.5}`` for HAFrame, ``{"hidden_dim": 256}`` for the linear heads.
    head_transform:
        ``"prelu"`` (HAFrame's transformation module) or ``"none"``; used by the ``haframe``
        head and ``linear(shape="type2")``. (Not ``transform``: scikit-learn would take an
        attribute of that name for a transformer's method.)
    max_epochs, batch_size, lr, weight_decay, optimizer:
        Training: ``max_epochs`` passes over shuffled mini-batches (``batch_size=None``: full
        batch), learning rate ``lr`` with a cosine decay to 0 over the epochs, AdamW
        (decoupled weight decay) or SGD with momentum 0.9.
    random_state:
        Seeds the head's initialisation, the frame's rotation and the batch order (a private
        ``torch.Generator``): equal seeds give equal models.
    device:
        Torch device for training and prediction (``"cpu"``, ``"cuda"``).
    verbose:
        Print the mean training loss after every epoch.

    Attributes
    ----------
    classes_: labels seen in ``y``, sorted (the columns of ``predict_proba``).
    all_classes_: every class id of the hierarchy, in its order (``predict_proba_all``).
    hierarchy_: the resolved :class:`~hafcls.hierarchy.Hierarchy`.
    module_: the trained torch head (eval mode), ``module_(x) -> (logits, features)``.
    temperature_: probabilities are ``softmax(logits / temperature_)`` (the method's).
    n_features_in_, feature_names_in_ (DataFrame input only), n_iter_ (epochs), loss_curve_.
    """

    def __init__(self, hierarchy, method="haframe", method_options=None,
                 head_transform="prelu",
                 max_epochs=100, batch_size=256, lr=1e-3, weight_decay=1e-4, optimizer="adamw",
                 random_state=None, device="cpu", verbose=False):
        self.hierarchy = hierarchy
        self.method = method
        self.method_options = method_options
        self.head_transform = head_transform
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.random_state = random_state
        self.device = device
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y):
        """Train the head on ``X`` (n_samples x n_features) with class-id labels ``y``."""
        X, y = validate_data(self, X, y, dtype=_DTYPES)
        check_classification_targets(y)
        if X.shape[0] < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples to fit (batch "
                             f"normalisation statistics), got {X.shape[0]} sample.")
        self._check_params()
        from hafcls.metrics.labels import class_indices

        hierarchy = _resolve_hierarchy(self.hierarchy)
        targets = class_indices(y, hierarchy, "y")
        classes = np.unique(y)
        columns = class_indices(classes, hierarchy, "classes")
        if len(np.unique(columns)) != len(columns):
            raise HafclsError("Two different labels in y name the same hierarchy class "
                              "(e.g. 1 and '1').", "use one spelling per class.")
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        device = torch.device(self.device)
        head, loss, temperature = _build_head_and_loss(
            self.method, self.method_options, hierarchy, X.shape[1], self.head_transform, seed)
        head.to(device)
        loss.to(device)
        self.loss_curve_ = self._train(head, loss, X, targets, seed, device)

        # predictions in float64 (where the device has it): results do not depend on how rows
        # are batched, which scikit-learn checks (subset and sample-order invariance)
        head.eval()
        if device.type != "mps":
            head.to(torch.float64)
        self.module_ = head
        self.temperature_ = temperature
        self.hierarchy_ = hierarchy
        self.classes_ = classes
        self.all_classes_ = np.asarray(hierarchy.classes)
        self.n_iter_ = int(self.max_epochs)
        self._columns = columns  # hierarchy column of each entry of classes_
        return self

    def _train(self, head, loss, X, targets, seed, device) -> list[float]:
        params = list({id(p): p for m in (head, loss) for p in m.parameters()
                       if p.requires_grad}.values())
        if self.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9,
                                  weight_decay=self.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.max_epochs)
        xt = torch.tensor(X, dtype=torch.float32, device=device)  # a copy: X may be read-only
        yt = torch.as_tensor(targets, dtype=torch.long).to(device)
        gen = torch.Generator().manual_seed(seed)
        n = xt.shape[0]
        size = n if self.batch_size is None else min(int(self.batch_size), n)
        curve = []
        head.train()
        for epoch in range(self.max_epochs):
            total = torch.zeros((), device=device)
            for idx in _batches(torch.randperm(n, generator=gen).to(device), size):
                logits, features = head(xt[idx])
                value = loss(logits, features, yt[idx])
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()
                total += value.detach() * len(idx)
            sched.step()
            curve.append(float(total) / n)
            if not np.isfinite(curve[-1]):
                raise HafclsError(f"Training diverged at epoch {epoch + 1} (loss "
                                  f"{curve[-1]}).", "lower lr, or standardise the features.")
            if self.verbose:
                print(f"epoch {epoch + 1}/{self.max_epochs}  loss {curve[-1]:.4f}")
        return curve

    def _check_params(self) -> None:
        checks = [
            (_is_int(self.max_epochs) and self.max_epochs >= 1, "max_epochs",
             "a positive integer"),
            (self.batch_size is None or (_is_int(self.batch_size) and self.batch_size >= 1),
             "batch_size", "a positive integer or None (full batch)"),
            (_is_number(self.lr) and self.lr > 0, "lr", "a positive number"),
            (_is_number(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
             "a number >= 0"),
            (self.optimizer in OPTIMIZERS, "optimizer", f"one of {OPTIMIZERS}"),
            (self.head_transform in TRANSFORMS, "head_transform", f"one of {TRANSFORMS}"),
            (self.method_options is None or isinstance(self.method_options, dict),
             "method_options", "a dict or None"),
        ]
        for ok, name, what in checks:
            if not ok:
                raise HafclsError(f"{name} must be {what}, got {getattr(self, name)!r}.",
                                  f"pass {name} as {what}.")

    # ------------------------------------------------------------------ scores
    def _logits(self, X) -> torch.Tensor:
        """N x K logits over every hierarchy class, divided by the method's temperature."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=_DTYPES)
        param = next(self.module_.parameters())
        out = []
        with torch.no_grad():
            for start in range(0, X.shape[0], _PREDICT_ROWS):
                rows = X[start:start + _PREDICT_ROWS]
                x = torch.tensor(rows, dtype=param.dtype, device=param.device)
                out.append(self.module_(x)[0])
        return torch.cat(out).double() / self.temperature_

    def _seen_logits(self, X) -> torch.Tensor:
        logits = self._logits(X)
        return logits[:, torch.as_tensor(self._columns, device=logits.device)]

    def decision_function(self, X):
        """Scores of ``classes_`` (logits / temperature); binary: ``score[1] - score[0]``."""
        z = self._seen_logits(X)
        if z.shape[1] == 2:
            z = z[:, 1] - z[:, 0]
        return z.cpu().numpy()

    def predict_proba(self, X):
        """Probabilities of ``classes_`` (rows sum to 1; classes without data get none)."""
        return torch.softmax(self._seen_logits(X), dim=1).cpu().numpy()

    def predict_log_proba(self, X):
        return torch.log_softmax(self._seen_logits(X), dim=1).cpu().numpy()

    def predict_proba_all(self, X):
        """Probabilities of every hierarchy class (columns in ``all_classes_`` order)."""
        return torch.softmax(self._logits(X), dim=1).cpu().numpy()

    def predict(self, X):
        """The most probable class of ``classes_`` for every row."""
        best = self._seen_logits(X).argmax(dim=1).cpu().numpy()
        return self.classes_[best]

    def predict_node(self, X, threshold: float = 0.8):
        """Hedged predictions: the deepest node whose probability reaches ``threshold``.

        A node's probability is the mass of ``predict_proba`` on the classes at or below it
        (:func:`hafcls.inference.hedge`); ``threshold=0`` gives ``predict``'s class, 1 backs off
        to the node holding all the mass. Returns node ids (strings, ``hierarchy_.nodes``).
        """
        from hafcls.inference import hedge

        probs = self._full_probs(X)
        return np.asarray(hedge(probs, self.hierarchy_, threshold).node_ids)

    def _full_probs(self, X) -> np.ndarray:
        """``predict_proba`` scattered into the hierarchy's K columns (zeros for unseen)."""
        seen = self.predict_proba(X)
        full = np.zeros((seen.shape[0], self.hierarchy_.num_classes))
        full[:, self._columns] = seen
        return full

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.classifier_tags.multi_label = False
        tags.non_deterministic = False
        return tags


# ---------------------------------------------------------------------- helpers
def _batches(perm: torch.Tensor, size: int):
    """Slices of ``perm`` of ``size`` rows; a last batch of one row joins the one before
    (batch normalisation cannot train on a single row)."""
    n = perm.shape[0]
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else n
        yield perm[start:end]


def _resolve_hierarchy(hierarchy):
    from hafcls.hierarchy import Hierarchy, load

    if isinstance(hierarchy, Hierarchy):
        return hierarchy
    if isinstance(hierarchy, str) or hasattr(hierarchy, "__fspath__"):
        return load(hierarchy)
    raise HafclsError(
        f"hierarchy must be a hafcls Hierarchy, a shipped hierarchy name or a file path, got "
        f"{type(hierarchy).__name__}.",
        "pass e.g. hafcls.hierarchy.load('imagenet-1k') or Hierarchy.from_edges(...).",
    )


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return _is_int(value) or isinstance(value, (float, np.floating))
