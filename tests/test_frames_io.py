"""Frame files (safetensors + JSON metadata, no pickle) and the ``hafcls frame`` command."""

import json
import struct

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from hafcls.cli.frame import command
from hafcls.errors import HafclsError
from hafcls.frames import Frame, equiangular_basis, haframe, simplex_etf
from hafcls.hierarchy import Hierarchy, load


def small():
    return Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "a1"), ("a", "a2"), ("b", "b1"),
                                 ("b", "b2"), ("r", "c")])


def other():
    return Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "a1"), ("a", "a2"), ("a", "b1"),
                                 ("b", "b2"), ("r", "c")])


def header(path):
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])


@pytest.mark.parametrize("method", ["eigh", "tree"])
def test_round_trip(tmp_path, method):
    h = small()
    f = haframe(h, gamma=2.0, method=method, seed=4)
    path = f.save(tmp_path / "frame.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.safetensors"]  # no temp left
    meta = json.loads(header(path)["__metadata__"]["hafcls"])
    assert meta["fingerprint"] == h.fingerprint() and meta["kind"] == "haframe"
    g = Frame.load(path, hierarchy=h)
    assert torch.equal(g.weight, f.weight) and torch.equal(g.similarity, f.similarity)
    for key in ("kind", "gamma", "s_min", "method", "dim", "max_error", "seed", "fingerprint"):
        assert getattr(g, key) == getattr(f, key), key
    assert g.info["s_min_rule"] == "paper" and g.num_classes == h.num_classes
    assert g.to_metadata() == f.to_metadata()


def test_fingerprint_mismatch_is_refused(tmp_path):
    f = haframe(small(), method="tree")
    path = f.save(tmp_path / "f.safetensors")
    with pytest.raises(HafclsError) as err:
        Frame.load(path, hierarchy=other())
    text = str(err.value)
    assert small().fingerprint() in text and other().fingerprint() in text
    assert "rebuild the frame" in text
    Frame.load(path)  # without a hierarchy there is nothing to compare


def test_baselines_round_trip_and_class_count_check(tmp_path):
    etf = simplex_etf(7, seed=2)
    g = Frame.load(etf.save(tmp_path / "etf.st"))
    assert torch.equal(g.weight, etf.weight) and g.kind == "etf" and g.fingerprint is None
    with pytest.raises(HafclsError, match="7 classes"):
        Frame.load(tmp_path / "etf.st", hierarchy=small())  # 5 classes
    ebv = equiangular_basis(6, 3, steps=5)
    g = Frame.load(ebv.save(tmp_path / "ebv.st"))
    assert g.similarity is None and g.max_error is None and g.kind == "ebv"
    assert g.info["max_abs_cos"] == ebv.info["max_abs_cos"]


def test_similarity_can_be_left_out(tmp_path):
    f = haframe(small(), method="tree")
    g = Frame.load(f.save(tmp_path / "f.st", include_similarity=False))
    assert g.similarity is None and not g.to_metadata()["has_similarity"]
    assert "similarity" not in header(tmp_path / "f.st")


def test_bad_files_are_reported(tmp_path):
    with pytest.raises(HafclsError, match="No such frame file"):
        Frame.load(tmp_path / "missing.st")
    junk = tmp_path / "junk.st"
    junk.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(HafclsError, match="not a readable safetensors"):
        Frame.load(junk)
    foreign = tmp_path / "foreign.st"
    save_file({"weight": torch.zeros(2, 2)}, str(foreign))
    with pytest.raises(HafclsError, match="not a hafcls frame"):
        Frame.load(foreign)


def test_frame_validates_its_fields():
    with pytest.raises(HafclsError, match="2-d"):
        Frame(weight=torch.zeros(3))
    with pytest.raises(HafclsError, match="kind"):
        Frame(weight=torch.zeros(3, 2), kind="svm")
    with pytest.raises(HafclsError, match="similarity"):
        Frame(weight=torch.zeros(3, 2), similarity=torch.zeros(3, 3))


# ---------------------------------------------------------------------- CLI
def test_cli_builds_and_saves(tmp_path):
    out = tmp_path / "in1k.safetensors"
    result = CliRunner().invoke(
        command, ["imagenet-1k", "--method", "tree", "--gamma", "2", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "1000" in result.output and "s_min" in result.output and "max error" in result.output
    h = load("imagenet-1k")
    f = Frame.load(out, hierarchy=h)
    assert f.gamma == 2.0 and f.method == "tree" and f.max_error < 1e-12
    assert f"dimension d:  {f.dim}" in result.output


def test_cli_reads_an_isa_file_and_float_s_min(tmp_path):
    isa = tmp_path / "tree.txt"
    isa.write_text("r a\nr b\na a1\na a2\nb b1\nb b2\n")
    out = tmp_path / "f.st"
    result = CliRunner().invoke(command, [str(isa), "--s-min", "-0.2", "--dim", "2", "-o",
                                          str(out), "--method", "eigh"])
    assert result.exit_code == 0, result.output
    f = Frame.load(out)
    assert f.s_min == -0.2 and f.dim == 2 and "lambda_3" in result.output
    assert np.isclose(f.weight.norm(dim=0).numpy(), 1.0).all()


def test_cli_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(command, ["imagenet-1k", "--gamma", "0", "-o", str(tmp_path / "x")])
    assert isinstance(result.exception, HafclsError) and "gamma" in str(result.exception)
    result = runner.invoke(command, ["imagenet-1k", "--s-min", "low", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--s-min" in result.output
    result = runner.invoke(command, ["no-such-tree", "-o", str(tmp_path / "x")])
    assert isinstance(result.exception, HafclsError)
    assert not (tmp_path / "x").exists()
