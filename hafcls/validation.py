"""Shared checks of user input, in the manner of scikit-learn's ``check_scalar``.

- :func:`check_scalar`: type and bounds of one number (or bool, str) with a message naming it.
- :class:`Option`: an option declared as data (name, type, bounds, choices, default, help); the
  config fields, method/head/dataset options and the CLI read these declarations, so each bound
  is written once. :func:`check_options` checks a mapping of values against a tuple of them.
- :func:`read_user_file`: the one reader of user JSON / YAML / text files (UTF-8, no pickles,
  duplicate YAML keys refused).
- :func:`check_distance_matrix`: the one check of a K x K class-distance matrix.

Every failure raises :class:`~hafcls.errors.HafclsError` naming the value and the fix.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hafcls.errors import HafclsError

_BOUNDARIES = ("both", "left", "right", "neither")
_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
               dict: "a mapping", list: "a list"}


# ---------------------------------------------------------------------- scalars
def _type_word(target_type) -> str:
    types = target_type if isinstance(target_type, tuple) else (target_type,)
    return " or ".join(_TYPE_WORDS.get(t, getattr(t, "__name__", str(t))) for t in types)


def _is_instance(value, target_type) -> bool:
    types = target_type if isinstance(target_type, tuple) else (target_type,)
    if isinstance(value, bool) and bool not in types:
        return False  # True is not the integer 1 for an option
    for t in types:
        if t is float and isinstance(value, numbers.Real):
            return True
        if t is int and isinstance(value, numbers.Integral):
            return True
        if isinstance(value, t):
            return True
    return False


def check_scalar(value: Any, name: str, target_type, *, min_val: float | None = None,
                 max_val: float | None = None, include_boundaries: str = "both",
                 fix: str | None = None) -> Any:
    """Return ``value`` (ints widened to float for ``float``) if it has ``target_type`` and lies
    within ``[min_val, max_val]``; otherwise raise naming ``name``.

    ``include_boundaries`` is ``"both"``, ``"left"``, ``"right"`` or ``"neither"`` (which ends
    of the interval are allowed). Floats must be finite.
    """
    if include_boundaries not in _BOUNDARIES:
        raise ValueError(f"include_boundaries must be one of {_BOUNDARIES}")
    if not _is_instance(value, target_type):
        raise HafclsError(f"{name} must be {_type_word(target_type)}, got {value!r} "
                          f"({type(value).__name__}).", fix or f"give {name} as "
                          f"{_type_word(target_type)}.")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            wanted = _bounds_text(min_val, max_val, include_boundaries)
            wanted = wanted if wanted == _POSITIVE else "finite"
            raise HafclsError(f"{name} must be {wanted}, got {value}.",
                              fix or f"give {name} a finite value.")
        low_ok = min_val is None or (value >= min_val if include_boundaries in ("both", "left")
                                     else value > min_val)
        high_ok = max_val is None or (value <= max_val if include_boundaries in ("both", "right")
                                      else value < max_val)
        if not (low_ok and high_ok):
            raise HafclsError(f"{name} must be {_bounds_text(min_val, max_val, include_boundaries)}"
                              f", got {value}.", fix or f"choose {name} in that range.")
        if target_type is float:
            value = float(value)
    return value


def check_int(value: Any, minimum: int, message: str, fix: str) -> int:
    """``int(value)`` for an integer (numpy integers too, never a bool) of at least ``minimum``;
    otherwise ``HafclsError(message, fix)``, the caller's own wording of the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise HafclsError(message, fix)
    return int(value)


_POSITIVE = "a positive finite number (> 0)"


def _bounds_text(low, high, include: str) -> str:
    """``at least 1``, ``> 0``, ``in [0, 1)``, ... for the bounds of :func:`check_scalar`."""
    left, right = include in ("both", "left"), include in ("both", "right")
    if low is None and high is None:
        return "finite"
    if low == 0 and high is None and not left:
        return _POSITIVE
    if high is None:
        return f"at least {low:g}" if left else f"> {low:g}"
    if low is None:
        return f"at most {high:g}" if right else f"below {high:g}"
    return f"in {'[' if left else '('}{low:g}, {high:g}{']' if right else ')'}"


# ---------------------------------------------------------------------- declared options
@dataclass(frozen=True)
class Option:
    """An option declared as data.

    ``type`` is a Python type or a tuple of them; ``choices`` restricts values to a set (for
    strings); ``min``/``max``/``include_boundaries`` bound numbers as in :func:`check_scalar`;
    ``nullable`` allows ``None``.
    """

    name: str
    type: Any = float
    min: float | None = None
    max: float | None = None
    include_boundaries: str = "both"
    choices: tuple = ()
    nullable: bool = False
    default: Any = None
    help: str = ""

    def check(self, value: Any, where: str = "") -> Any:
        """The checked (and for floats widened) value; raise naming the option and ``where``."""
        label = f"{self.name!r}" + (f" in {where}" if where else "")
        if value is None and self.nullable:
            return None
        if self.choices:  # choices are strings; a numeric type may be allowed beside them
            if isinstance(value, str) and value in self.choices:
                return value
            if self.type is str or isinstance(value, str) or not _is_instance(value, self.type):
                extra = "" if self.type is str else f" or {_type_word(self.type)}"
                raise HafclsError(f"Option {label} must be one of "
                                  f"{', '.join(map(str, self.choices))}{extra}, got {value!r}.",
                                  f"set {self.name} to one of the listed values.")
        fix = f"set {self.name} to {_type_word(self.type)}"
        if self.min is not None or self.max is not None:
            bounds = _bounds_text(self.min, self.max, self.include_boundaries)
            fix = f"set {self.name} to {bounds}" if bounds == _POSITIVE else f"{fix} {bounds}"
        fix += f" ({self.help})." if self.help else "."
        return check_scalar(value, f"Option {label}", self.type, min_val=self.min,
                            max_val=self.max, include_boundaries=self.include_boundaries,
                            fix=fix)


def options_by_name(options: Iterable[Option]) -> dict[str, Option]:
    return {o.name: o for o in options}


def check_options(options: Iterable[Option], values: Mapping[str, Any], where: str = "",
                  unknown_ok: bool = False) -> dict:
    """Check every value against its declared :class:`Option`; unknown names raise (listing the
    known ones) unless ``unknown_ok``. Returns the checked values."""
    table = options_by_name(options)
    out = {}
    for key, value in values.items():
        option = table.get(key)
        if option is None:
            if unknown_ok:
                out[key] = value
                continue
            raise HafclsError(f"Unknown option {key!r}" + (f" for {where}" if where else "")
                              + ".", f"use one of {', '.join(sorted(table)) or '(none)'}.")
        out[key] = option.check(value, where)
    return out


# ---------------------------------------------------------------------- files
def read_user_text(path: str | os.PathLike, what: str = "file") -> str:
    """A user's text file as str; missing files, pickles, binaries and non-UTF-8 are errors."""
    path = Path(path)
    if not path.is_file():
        raise HafclsError(f"No such {what}: {path}.", "check the path.")
    raw = path.read_bytes()
    if raw.startswith(b"\x80"):
        raise HafclsError(
            f"{path} looks like a pickle, not a text file.",
            "convert a pickled nltk.Tree you trust with "
            "`hafcls hierarchy build nltk-pickle --trust FILE -o out.json`.",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise HafclsError(f"{path} is not UTF-8 text (bad byte at offset {err.start}).",
                          "re-save the file as UTF-8.") from None


def read_user_file(path: str | os.PathLike, what: str = "file", mapping: bool = True) -> Any:
    """Read a user's JSON (``.json``) or YAML (anything else) file.

    Duplicate keys are refused in both (the later one would silently win). With ``mapping`` the
    top level must be a mapping (an empty file reads as ``{}``).
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = read_user_json(path, what)
    else:
        data = _load_yaml(read_user_text(path, what), path)
    if mapping:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise HafclsError(f"{path} must hold a mapping of option names to values.",
                              "write one 'key: value' per line, e.g. 'epochs: 10'.")
    return data


def read_user_json(path: str | os.PathLike, what: str = "file",
                   fix: str = "fix the syntax or write it as YAML.") -> Any:
    """A user's JSON file; duplicate keys in an object are refused."""
    path = Path(path)
    text = read_user_text(path, what)
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique(pairs, path))
    except json.JSONDecodeError as err:
        raise HafclsError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}).",
                          fix) from None


def _unique(pairs: Sequence[tuple[Any, Any]], path: Path) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise HafclsError(f"{path} sets {key!r} twice.", "keep one of the two lines.")
        out[key] = value
    return out


_LOADER = None


def yaml_loader():
    """PyYAML's safe loader, reading ``1e-3`` as the number it is (YAML 1.2; PyYAML follows
    YAML 1.1, where a float needs a dot, and would give the string ``'1e-3'``)."""
    global _LOADER
    if _LOADER is None:
        import re

        import yaml

        class Loader(yaml.SafeLoader):
            pass

        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:float",
            re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
            list("-+0123456789"))
        _LOADER = Loader
    return _LOADER


def load_yaml_text(text: str) -> Any:
    """``yaml.load`` with :func:`yaml_loader` (safe; exponent floats read as numbers)."""
    loader = yaml_loader()(text)  # a SafeLoader subclass: no Python objects are built
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _load_yaml(text: str, path: Path) -> Any:
    import yaml

    try:
        _refuse_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), path)
        return load_yaml_text(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise HafclsError(f"{path} is not valid YAML{where}.",
                          "fix the syntax (one 'key: value' per line).") from None


def _refuse_duplicate_keys(node, path: Path) -> None:
    """Walk the composed YAML nodes; a key written twice in one mapping is an error (the
    parser would silently keep the last one)."""
    import yaml

    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            keys = [k.value for k, _ in current.value
                    if isinstance(k, yaml.ScalarNode) and k.value != "<<"]
            seen = set()
            for key in keys:
                if key in seen:
                    raise HafclsError(f"{path} sets {key!r} twice.", "keep one of the two lines.")
                seen.add(key)
            stack += [v for _, v in current.value]
        elif isinstance(current, yaml.SequenceNode):
            stack += current.value


# ---------------------------------------------------------------------- distance matrices
def check_distance_matrix(distance, *, min_classes: int = 2, whole: bool = False,
                          symmetric: bool = True, allow_all_zero: bool = False) -> np.ndarray:
    """The one check of a K x K class-distance matrix (numpy array or torch tensor).

    Square with K >= ``min_classes``, real numbers (not bool or complex), finite, non-negative,
    a zero diagonal, symmetric (unless ``symmetric=False``), whole numbers when ``whole`` (tree
    distances), and not all zero unless ``allow_all_zero``. Returns the numpy matrix.
    """
    if hasattr(distance, "detach"):
        distance = distance.detach().cpu().numpy()
    elif not isinstance(distance, np.ndarray):
        raise HafclsError(f"Expected a K x K distance matrix, got {type(distance).__name__}.",
                          "pass a hafcls Hierarchy, or hierarchy.distance_matrix().")
    d = distance
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise HafclsError(f"A distance matrix must be square K x K, got shape {tuple(d.shape)}.",
                          "pass the K x K matrix of distances between the K classes.")
    if d.shape[0] < min_classes:
        raise HafclsError(f"A distance matrix needs at least {min_classes} classes, got "
                          f"{d.shape[0]}.", f"pass a K x K matrix with K >= {min_classes}.")
    if d.dtype == bool or not (np.issubdtype(d.dtype, np.integer)
                               or np.issubdtype(d.dtype, np.floating)):
        raise HafclsError(f"A distance matrix must hold integers or floats, got dtype {d.dtype}.",
                          "convert it with .astype(np.int16) or .astype(np.float64).")
    floating = np.issubdtype(d.dtype, np.floating)
    if floating and not np.isfinite(d).all():
        raise HafclsError("The distance matrix holds NaN or infinite values.",
                          "give finite distances between all class pairs.")
    if d.size and d.min() < 0:
        raise HafclsError("The distance matrix holds negative distances.",
                          "distances between classes must be >= 0.")
    if np.diagonal(d).any():
        raise HafclsError(
            "The distance matrix has a non-zero diagonal: a correct prediction must cost 0.",
            "set D[i, i] = 0 for every class i.")
    if whole and floating and not np.array_equal(d, np.round(d)):
        raise HafclsError("Class distances must be whole numbers (tree distances).",
                          "pass hierarchy.distance_matrix().")
    if symmetric and not np.array_equal(d, d.T):
        raise HafclsError("The distance matrix is not symmetric.", "use d(a, b) = d(b, a).")
    if not allow_all_zero and d.size and d.max() == 0:
        raise HafclsError("All class distances are zero.", "check the hierarchy.")
    return d
