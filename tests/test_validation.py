"""Shared validation: check_scalar, declared options, the file reader, the distance check."""

import numpy as np
import pytest
import torch

from hafcls.errors import HafclsError
from hafcls.validation import (
    Option,
    check_distance_matrix,
    check_options,
    check_scalar,
    read_user_file,
)


@pytest.mark.parametrize("value, kwargs, words", [
    (0, dict(target_type=int, min_val=1), "at least 1"),
    (0.0, dict(target_type=float, min_val=0, include_boundaries="neither"), "> 0"),
    (1.0, dict(target_type=float, min_val=0, max_val=1, include_boundaries="left"), "[0, 1)"),
    (2, dict(target_type=float, max_val=1), "at most 1"),
    (True, dict(target_type=int), "an integer"),
    ("3", dict(target_type=float), "a number"),
    (float("nan"), dict(target_type=float), "finite"),
    (float("inf"), dict(target_type=float, min_val=0, include_boundaries="neither"),
     "positive finite"),
])
def test_check_scalar_refuses_with_the_reason(value, kwargs, words):
    with pytest.raises(HafclsError, match="x must") as err:
        check_scalar(value, "x", **kwargs)
    assert words in str(err.value) and err.value.fix


def test_check_scalar_passes_and_widens():
    assert check_scalar(3, "x", float, min_val=0) == 3.0
    assert isinstance(check_scalar(3, "x", float), float)
    assert check_scalar(np.int64(4), "x", int, min_val=4) == 4
    assert check_scalar(1.0, "x", float, min_val=0, max_val=1) == 1.0  # both ends included


def test_options_declared_as_data():
    specs = (Option("alpha", float, 0, 1), Option("mode", str, choices=("a", "b")),
             Option("s", (float, str), nullable=True), Option("n", float, choices=("auto",)))
    assert check_options(specs, {"alpha": 1, "mode": "b", "s": None, "n": "auto"}) == \
        {"alpha": 1.0, "mode": "b", "s": None, "n": "auto"}
    assert check_options(specs, {"n": 2})["n"] == 2.0
    with pytest.raises(HafclsError, match="'mode'.*one of a, b"):
        check_options(specs, {"mode": "c"})
    with pytest.raises(HafclsError, match="Unknown option 'beta'.*alpha, mode, n, s"):
        check_options(specs, {"beta": 1})
    with pytest.raises(HafclsError, match=r"'alpha' in here must be in \[0, 1\]"):
        check_options(specs, {"alpha": 2}, "here")


BAD_FILES = {  # file name -> (content, words of the error)
    "a.yaml": ("epochs: 1\nlr: 0.1\nepochs: 2\n", "'epochs' twice"),
    "b.yaml": ("outer:\n  k: 1\n  k: 2\n", "'k' twice"),
    "c.json": ('{"a": {"b": 1, "b": 2}}', "'b' twice"),
    "d.yaml": ("- 1\n- 2\n", "mapping"),
    "e.yaml": ("a: [1,\n", "not valid YAML"),
    "f.json": ("{a: 1", "not valid JSON"),
    "g.yaml": (b"\x80\x04K\x01.", "pickle"),
    "h.yaml": (b"\xff\xfe\x00bad", "UTF-8"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_one_reader_for_user_files(tmp_path, name):
    text, words = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(HafclsError, match=words):
        read_user_file(path)


def test_reader_reads_yaml_and_json(tmp_path):
    (tmp_path / "c.yaml").write_text("epochs: 3\nopts: {a: 1}\n")
    (tmp_path / "c.json").write_text('{"epochs": 3}')
    (tmp_path / "empty.yaml").write_text("")
    assert read_user_file(tmp_path / "c.yaml") == {"epochs": 3, "opts": {"a": 1}}
    assert read_user_file(tmp_path / "c.json") == {"epochs": 3}
    assert read_user_file(tmp_path / "empty.yaml") == {}
    with pytest.raises(HafclsError, match="No such config file"):
        read_user_file(tmp_path / "missing.yaml", "config file")


def test_one_distance_matrix_check():
    good = np.array([[0, 1, 2], [1, 0, 2], [2, 2, 0]], dtype=np.uint8)
    assert check_distance_matrix(good) is good
    assert check_distance_matrix(torch.as_tensor(good)).dtype == np.uint8
    bad = {
        "square": np.zeros((2, 3)),
        "at least 2": np.zeros((1, 1)),
        "integers or floats": good.astype(bool),
        "NaN": np.where(good == 2, np.nan, good),
        "negative": good.astype(np.int8) * -1,
        "diagonal": good + np.eye(3, dtype=np.uint8),
        "symmetric": np.array([[0, 1], [2, 0]]),
        "zero": np.zeros((3, 3)),
    }
    for words, matrix in bad.items():
        with pytest.raises(HafclsError, match=words):
            check_distance_matrix(matrix)
    with pytest.raises(HafclsError, match="whole numbers"):
        check_distance_matrix(good + 0.5 * (1 - np.eye(3)), whole=True)
    assert check_distance_matrix(np.array([[0, 1], [2, 0]]), symmetric=False).shape == (2, 2)
