"""`hafcls hierarchy show|build` through click's runner: output, files, exit codes."""

import json

from click.testing import CliRunner

from hafcls.cli.main import cli
from hafcls.hierarchy import Hierarchy


def test_show_shipped():
    result = CliRunner().invoke(cli, ["hierarchy", "show", "imagenet-1k", "--classes", "1"])
    assert result.exit_code == 0, result.output
    assert "classes: 1000" in result.output and "height: 17" in result.output
    assert "entity > " in result.output and "> tench" in result.output
    assert "distance histogram" in result.output


def test_build_isa_then_show(tmp_path):
    isa = tmp_path / "tree.txt"
    isa.write_text("root animal\nroot vehicle\nanimal cat\nanimal dog\nvehicle car\n")
    out = tmp_path / "tree.json"
    r = CliRunner().invoke(cli, ["hierarchy", "build", "isa", str(isa), "-o", str(out),
                                 "--name", "toy"])
    assert r.exit_code == 0, r.output
    h = Hierarchy.from_json(out)
    assert h.classes == ["car", "cat", "dog"] and h.meta["name"] == "toy"
    r = CliRunner().invoke(cli, ["hierarchy", "show", str(out)])
    assert r.exit_code == 0 and "classes: 3" in r.output


def test_build_wordnet(tmp_path, wordnet_data):
    ids = tmp_path / "ids.txt"
    ids.write_text("n01440764\nn01443537\n")
    out = tmp_path / "wn.json"
    r = CliRunner().invoke(cli, ["hierarchy", "build", "wordnet", str(ids), "-o", str(out),
                                 "--prune-chains"])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["classes"] == ["n01440764", "n01443537"] and data["meta"]["prune_chains"]


def test_bad_input_exits_2_without_traceback(tmp_path):
    cyc = tmp_path / "cycle.txt"
    cyc.write_text("a b\nb c\nc a\n")
    r = CliRunner().invoke(cli, ["hierarchy", "build", "isa", str(cyc), "-o",
                                 str(tmp_path / "x.json")])
    assert r.exit_code == 2
    assert "cycle" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.json").exists()
    pkl = tmp_path / "tree.pkl"
    pkl.write_bytes(b"\x80\x04N.")
    r = CliRunner().invoke(cli, ["hierarchy", "build", "nltk-pickle", str(pkl), "-o",
                                 str(tmp_path / "y.json")])
    assert r.exit_code == 2 and "arbitrary code" in r.output
    r = CliRunner().invoke(cli, ["hierarchy", "show", "no-such-tree"])
    assert r.exit_code == 2 and "imagenet-1k" in r.output
