"""Checks of a run's config that need the registries, done before anything is written.

:class:`~hafcls.engine.config.TrainConfig` checks its own fields; the mappings it carries
(``data_options``, ``method_options``, ``model_options``) and the selection metric are checked
here against the options the dataset, the method, its head and the backbone declare, so that a
typo or an impossible value fails in a second, not after an epoch. :func:`outside_errors` turns
failures of the outside world (no network, an unwritable cache folder) into clear messages.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Mapping

from hafcls.errors import HafclsError
from hafcls.validation import Option, check_options

#: timm keyword arguments that take a number or a name; checked before timm sees them (other
#: keys go to timm, which refuses the ones a model does not accept)
MODEL_OPTIONS = (
    Option("drop_rate", float, 0.0, 1.0, "left", help="dropout before the classifier"),
    Option("drop_path_rate", float, 0.0, 1.0, "left", help="stochastic depth"),
    Option("drop_block_rate", float, 0.0, 1.0, "left"),
    Option("attn_drop_rate", float, 0.0, 1.0, "left"),
    Option("proj_drop_rate", float, 0.0, 1.0, "left"),
    Option("pos_drop_rate", float, 0.0, 1.0, "left"),
    Option("in_chans", int, 1, None), Option("img_size", int, 1, None),
    Option("global_pool", str, choices=("avg", "max", "avgmax", "catavgmax", "token", "")),
    Option("output_stride", int, 8, 32),
)
#: the validation metrics a run can select by, besides hierdist@k / hops@k / acc@depth<t>
FIXED_METRICS = ("top1", "top5", "mistake_severity", "loss", "hops")
SPLITS = ("train", "val", "test")


def check_run_options(config) -> None:
    """Every option of ``config`` that the registries declare: data, method, model, metric."""
    check_data_options(config.data, config.data_options)
    if config.method:
        from hafcls.methods import get_method

        method = get_method(config.method, dataset=config.data)
        if config.method_options:
            method = method.with_options(**config.method_options)
    check_model_options(config.model_options)
    check_select_metric(config.select_metric)


def check_data_options(data: str, options: Mapping) -> None:
    from hafcls.data.registry import COMMON_OPTIONS
    from hafcls.registry import DATASETS

    spec = DATASETS.get(data)
    declared = (*COMMON_OPTIONS, *spec.options)
    known = {o.name for o in declared}
    unknown = sorted(set(options) - known)
    if unknown:
        raise HafclsError(f"Unknown data_options for the {data} dataset: {', '.join(unknown)}.",
                          f"use some of {', '.join(sorted(known))}.")
    check_options(declared, options, f"data_options of {data}")
    per_class = options.get("per_class")
    if isinstance(per_class, Mapping):  # a mapping of split sizes: no other keys, whole sizes
        for key, value in per_class.items():
            if key not in SPLITS:
                hint = (" (write 'train: 2' with a space after the colon, or JSON "
                        "'{\"train\": 2}')" if isinstance(key, str) and ":" in key else "")
                raise HafclsError(f"data_options.per_class has the key {key!r}{hint}.",
                                  "use a mapping of train, val and test to sizes, e.g. "
                                  "--set 'data_options.per_class={train: 2, val: 1, test: 1}'.")
            Option(f"per_class.{key}", int, 1, None).check(value, "data_options")


def check_model_options(options: Mapping) -> None:
    declared = {o.name: o for o in MODEL_OPTIONS}
    for key, value in options.items():
        if key in declared:
            declared[key].check(value, "model_options")


def check_select_metric(name: str, height: int | None = None, ks=None) -> None:
    """Refuse a selection metric the validation will not report (``height``: of the tree,
    when known, bounds acc@depth<t>; ``ks``: the k of hierdist@k / hops@k)."""
    from hafcls.metrics import DEFAULT_KS

    ks = tuple(ks or DEFAULT_KS)
    names = [*FIXED_METRICS, *(f"hierdist@{k}" for k in ks), *(f"hops@{k}" for k in ks)]
    if name in names:
        return
    match = re.fullmatch(r"acc@depth(\d+)", str(name))
    if match and int(match.group(1)) >= 1 and (height is None or int(match.group(1)) <= height):
        return
    depths = "acc@depth1 .. acc@depth<height>" if height is None else \
        f"acc@depth1 .. acc@depth{height}"
    raise HafclsError(f"Unknown selection metric {name!r}: validation does not report it.",
                      f"use one of {', '.join(names)} or {depths} (--select-metric).")


def check_splits_present(bundle) -> None:
    """Training needs every split: refuse one whose folder is absent (evaluation needs only
    the split it reads, so the dataset leaves an absent split empty instead of failing)."""
    for name, split in bundle.splits.items():
        folder = getattr(split, "absent", None)
        if folder is not None:
            raise HafclsError(f"No {folder.name!r} folder in {folder.parent}: training needs "
                              f"the {name} split.",
                              f"create {folder} with one sub-folder of images per class, or "
                              f"point --set data_options.{name}_split=NAME at another folder.")


def check_batch_norm_batch(model, batch_size: int) -> bool:
    """Whether ``model`` has batch norm layers (which cannot train on one sample); refuse a
    batch size of one for such a model."""
    from torch import nn

    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and batch_size == 1:
        raise HafclsError(
            "--batch-size 1 cannot train this model: it has batch norm layers, which need at "
            "least two samples per batch in training.",
            "use --batch-size 2 or more (e.g. 32), or a backbone without batch norm (e.g. a "
            "ViT).")
    return has_bn


# ---------------------------------------------------------------------- the outside world
_NETWORK_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED,
                   errno.ECONNRESET, errno.ETIMEDOUT}


def _is_network_error(err: BaseException) -> bool:
    import socket
    import urllib.error

    names = {type(e).__name__ for e in _chain(err)}
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError",
                "ConnectTimeout", "ReadTimeout", "MaxRetryError", "NameResolutionError"}:
        return True
    return any(isinstance(e, (urllib.error.URLError, socket.gaierror, socket.timeout))
               or (isinstance(e, OSError) and e.errno in _NETWORK_ERRNOS) for e in _chain(err))


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def cache_folders() -> list[str]:
    """Where timm/huggingface and torchvision keep downloads (after the environment)."""
    home = os.path.expanduser("~/.cache")
    hf = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(home, "huggingface"), "hub")
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(home, "torch")
    return [hf, torch_home]


@contextlib.contextmanager
def outside_errors(what: str, fix: str):
    """Run a download-capable step; no network or an unwritable folder becomes a
    :class:`HafclsError` naming ``what`` and ``fix`` (and the cache folders)."""
    try:
        yield
    except HafclsError:
        raise
    except Exception as err:
        if _is_network_error(err):
            raise HafclsError(f"{what} failed: no network connection ({type(err).__name__}).",
                              fix) from None
        denied = next((e for e in _chain(err) if isinstance(e, OSError) and e.errno in
                       (errno.EACCES, errno.EPERM, errno.EROFS)), None)
        if denied is not None:
            where = denied.filename or ", ".join(cache_folders())
            raise HafclsError(f"{what} failed: cannot write {where} ({denied.strerror}).",
                              "make that folder writable, or point HF_HOME / TORCH_HOME (the "
                              "download caches) at a writable folder.") from None
        raise
