"""Training methods by name: one module per method family, each registering itself.

===================  =========================  ======================================  ======
method               head (options)             loss (options)                          score T
===================  =========================  ======================================  ======
``ce``               linear (shape="type1")     cross-entropy (label_smoothing=0)       1
``haframe``          haframe (γ, s_min=paper)   HAFrame: (1−α)·CE + α·L_cos             1
``hier-cos``         subspace (seed)            path KL + α·level term (α per dataset)  1
``etf-dr``           etf                        dot regression                          0.07
``hug-mhe``          hug                        HUG, MHE energy (α = β = 1)             0.07
``hug-mhs``          hug                        HUG, MHS energy                         0.07
``hug-mgd``          hug                        HUG, MGD energy                         0.07
``soft-labels``      linear (shape="type1")     soft labels, β = 10                     1
``soft-labels-b4``   linear (shape="type1")     soft labels, β = 4 (published point)    1
``soft-labels-b30``  linear (shape="type1")     soft labels, β = 30 (published point)   1
``hxe``              linear (shape="type1")     HXE, α = 0.1, on CE's gradient scale    1
``hxe-a0.1``         linear (shape="type1")     HXE, α = 0.1 (published point)          1
``hxe-a0.6``         linear (shape="type1")     HXE, α = 0.6 (published point)          1
``ebv``              ebv (temperature 0.07)     CE on cos/0.07, label smoothing 0.1     1
===================  =========================  ======================================  ======

HAFrame's γ and α per dataset are the paper's (``docs/haframe.md``): cifar100 γ=2 α=0.4,
fgvc-aircraft γ=1 α=0.5, inat2019 γ=5 α=0.4, tiered-imagenet γ=3 α=0.5; any other dataset
gets γ=2, α=0.4. Hier-COS's α: ``hafcls.methods.hiercos.ALPHA_PRESETS``.

Scores for evaluation: ``Method.score(logits) = softmax(logits / T)``. Ranking (top-k,
HierDist@k) never depends on T: the engine ranks the logits. T above is each method's value
before training; at the end of a run the engine fits T on the validation split (minimum NLL) and
stores it in the checkpoint, and that fitted T is what CRM, hedging and prediction use.

Adding a method: a new module here that decorates ``factory(dataset) -> Method`` with
``@register_method("name")``, plus one import line below.

>>> method = get_method("haframe", dataset="cifar100")          # doctest: +SKIP
>>> model = method.create_model("resnet18", hierarchy)          # doctest: +SKIP
>>> loss_fn = method.build_loss(model, hierarchy)               # doctest: +SKIP
"""

# one import per method module: importing registers its methods
from hafcls.methods import (  # noqa: F401
    ce,
    ebv,
    etf_dr,
    haframe,
    hiercos,
    hug,
    hxe,
    soft_labels,
)
from hafcls.methods.base import (
    COSINE_TEMPERATURE,
    Method,
    available_methods,
    canonical_dataset,
    get_method,
    register_method,
    scores_from_logits,
)

__all__ = [
    "COSINE_TEMPERATURE",
    "Method",
    "available_methods",
    "canonical_dataset",
    "get_method",
    "register_method",
    "scores_from_logits",
]
