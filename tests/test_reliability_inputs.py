"""Bad input never loses work or fails silently: every malformed hierarchy, dataset, config or
checkpoint gives exit code 2 with a message naming the problem and the fix, no traceback, and
leaves no file half-written.

Each malformed input is one parametrized case (its id names it). A case builds its input files in
``tmp_path`` and returns the command line to run plus the output paths that must not change; the
shared check then asserts: exit code 2, the case's key words in the message (regular expressions,
case-insensitive), a "Fix:" part, no "Traceback", the watched outputs unchanged (or still absent)
and no temporary file left anywhere under ``tmp_path``. A few cases also run through a real
process (the ``hafcls`` console script, and ``python -m hafcls.cli.main``) to prove that
nothing reaches stderr but the message. Checkpoint cases use a tiny run trained once per module.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hafcls.cli.main import cli

# ---------------------------------------------------------------------- shared checks

TEMP_PATTERNS = (re.compile(r"^\..+\.tmp$"), re.compile(r"\.(tmp|partial|part)$"))


def snapshot(path: Path):
    """The content of a file, of every file under a folder, or None when it does not exist."""
    if path.is_file():
        return path.read_bytes()
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
                if p.is_file()}
    return None


def temp_files(root: Path) -> list[str]:
    """Leftover temporary files (atomic writes, partial downloads) under ``root``."""
    return [str(p) for p in root.rglob("*")
            if p.is_file() and any(pat.search(p.name) for pat in TEMP_PATTERNS)]


def check_clean_failure(output: str, exit_code: int, keywords, before: dict, root: Path,
                        exception: BaseException | None = None) -> None:
    """Exit 2, a message naming problem and fix, no traceback, nothing written half-way."""
    crashed = exception is not None and not isinstance(exception, SystemExit)
    assert not crashed, f"uncaught {type(exception).__name__}: {exception}\n{output}"
    assert exit_code == 2, f"exit code {exit_code}, output:\n{output}"
    assert "Traceback" not in output, output
    # our errors say "Fix: ..."; click's own usage errors point to --help instead
    assert "Error:" in output and ("Fix:" in output or "Try '" in output), \
        f"no problem/fix message:\n{output}"
    for pattern in keywords:
        assert re.search(pattern, output, re.IGNORECASE | re.DOTALL), \
            f"message lacks {pattern!r}:\n{output}"
    message = output.strip().splitlines()
    assert len(message) <= 8, f"message is not one paragraph:\n{output}"
    for path, old in before.items():
        assert snapshot(path) == old, f"{path} was changed by a failed command"
    assert temp_files(root) == []


@dataclass
class Case:
    """One malformed input: ``build(tmp_path) -> (argv, watched_paths)`` (checkpoint cases:
    ``build(tmp_path, trained_run)``) and the key words its message must contain."""

    id: str
    build: Callable[[Path], tuple[list[str], list[Path]]]
    keywords: tuple[str, ...]
    marks: tuple = field(default=())

    def param(self):
        return pytest.param(self, id=self.id, marks=self.marks)


def run_case(case: Case, tmp_path: Path) -> None:
    argv, watched = case.build(tmp_path)
    before = {Path(p): snapshot(Path(p)) for p in watched}
    result = CliRunner().invoke(cli, [str(a) for a in argv])
    check_clean_failure(result.output, result.exit_code, case.keywords, before, tmp_path,
                        result.exception)


def run_subprocess(argv: list, cwd: Path, entry: str = "script", timeout: float = 300):
    """Run the CLI in a fresh interpreter: the ``hafcls`` console script, or ``python -m``."""
    if entry == "script":
        script = shutil.which("hafcls")
        prefix = [script] if script else [sys.executable, "-c",
                                          "from hafcls.cli.main import cli; cli()"]
    else:
        prefix = [sys.executable, "-m", "hafcls.cli.main"]
    return subprocess.run([*prefix, *map(str, argv)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))


# ---------------------------------------------------------------------- hierarchy inputs

GOOD_JSON = {"format": "hafcls-hierarchy", "version": 1, "root": "r",
             "classes": ["x", "y", "z"], "edges": [["r", "a"], ["a", "x"], ["a", "y"], ["r", "z"]],
             "names": {}, "meta": {}}


def _show(name: str, content: bytes | str):
    """``hafcls hierarchy show FILE`` on a file holding ``content``."""
    def build(tmp: Path):
        path = tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return ["hierarchy", "show", path], [path]
    return build


def _build_isa(content: bytes | str):
    """``hafcls hierarchy build isa FILE -o out.json``: out.json must not appear."""
    def build(tmp: Path):
        path = tmp / "tree.txt"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        out = tmp / "out.json"
        return ["hierarchy", "build", "isa", path, "-o", out], [out, path]
    return build


def _json(**changes):
    data = dict(GOOD_JSON)
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data)


_DROP = object()


class _Evil:
    """Unpickling this runs ``open(<sentinel>, "w")``: proof that a loader executed a pickle."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def _pickle_as_hierarchy(name: str):
    def build(tmp: Path):
        path = tmp / name
        path.write_bytes(pickle.dumps({"root": ["a", "b"]}, protocol=4))
        return ["hierarchy", "show", path], [path]
    return build


def _wordnet_ids_binary(tmp: Path):
    ids = tmp / "ids.txt"
    ids.write_bytes(b"\xff\xfen\x000\x001\x00\x00\xd8")
    out = tmp / "wn.json"
    return ["hierarchy", "build", "wordnet", ids, "-o", out], [out]


def _output_parent_is_file(tmp: Path):
    tree = tmp / "tree.txt"
    tree.write_text("r a\nr b\n")
    blocker = tmp / "blocker"
    blocker.write_text("I am a file\n")
    return ["hierarchy", "build", "isa", tree, "-o", blocker / "out.json"], [blocker]


def _output_is_directory(tmp: Path):
    tree = tmp / "tree.txt"
    tree.write_text("r a\nr b\n")
    folder = tmp / "existing"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep me\n")
    return ["hierarchy", "build", "isa", tree, "-o", folder], [folder]


def _missing(tmp: Path):
    return ["hierarchy", "show", tmp / "nope.txt"], [tmp / "nope.txt"]


def _directory(tmp: Path):
    (tmp / "adir").mkdir()
    return ["hierarchy", "show", tmp / "adir"], [tmp / "adir"]


def _nltk_untrusted(tmp: Path):
    path = tmp / "tree.pkl"
    path.write_bytes(pickle.dumps(["not", "a", "tree"]))
    out = tmp / "out.json"
    return ["hierarchy", "build", "nltk-pickle", path, "-o", out], [out]


def _nltk_trusted_junk(tmp: Path):
    path = tmp / "tree.pkl"
    path.write_bytes(b"\x80\x04\x95garbage that is no pickle")
    out = tmp / "out.json"
    return ["hierarchy", "build", "nltk-pickle", path, "-o", out, "--trust"], [out]


def _nltk_trusted_not_a_tree(tmp: Path):
    path = tmp / "tree.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    out = tmp / "out.json"
    return ["hierarchy", "build", "nltk-pickle", path, "-o", out, "--trust"], [out]


def _cifar_missing(tmp: Path):
    (tmp / "cifar").mkdir()
    out = tmp / "c.json"
    return ["hierarchy", "build", "cifar100", tmp / "cifar", "-o", out], [out]


def _cifar_foreign_pickle(tmp: Path):
    folder = tmp / "cifar-100-python"
    folder.mkdir()
    sentinel = tmp / "PWNED"
    for name in ("meta", "train", "test"):
        (folder / name).write_bytes(pickle.dumps(_Evil(sentinel)))
    out = tmp / "c.json"
    return ["hierarchy", "build", "cifar100", tmp, "-o", out], [out, sentinel]


def _inat_not_json(tmp: Path):
    path = tmp / "train2019.json"
    path.write_text('{"categories": [')
    out = tmp / "i.json"
    return ["hierarchy", "build", "inaturalist", path, "-o", out], [out]


def _inat_wrong_json(tmp: Path):
    path = tmp / "train2019.json"
    path.write_text(json.dumps({"images": [], "annotations": []}))
    out = tmp / "i.json"
    return ["hierarchy", "build", "inaturalist", path, "-o", out], [out]


def _fgvc_missing(tmp: Path):
    (tmp / "fgvc-aircraft-2013b").mkdir()
    out = tmp / "f.json"
    return ["hierarchy", "build", "fgvc-aircraft", tmp / "fgvc-aircraft-2013b", "-o", out], [out]


_CHAIN_40K = "\n".join([f"n{i} n{i + 1}" for i in range(40_000)] + ["n40000 a", "n40000 b"])

HIERARCHY_CASES = [
    Case("isa-cycle", _build_isa("root a\na b\nb c\nc a\n"), ("cycle", "remove one edge")),
    Case("isa-self-loop", _build_isa("root a\na a\n"), ("own parent",)),
    Case("isa-two-parents", _build_isa("root a\nroot b\na x\nb x\n"),
         ("'x' has 2 parents", "one parent")),
    Case("isa-two-roots", _build_isa("r1 a\nr2 b\n"), ("2 roots", "common root")),
    Case("isa-duplicate-edge", _build_isa("root a\nroot b\nroot a\n"), ("twice", "duplicate")),
    Case("isa-empty-file", _build_isa(b""), ("no edges",)),
    Case("isa-only-comments", _build_isa("# a comment\n\n   \n"), ("no edges",)),
    Case("isa-three-columns", _build_isa("root a b\n"), ("line 1", "parent child")),
    Case("isa-latin1-encoding", _build_isa("root caf\xe9\n".encode("latin-1")), ("UTF-8",)),
    Case("isa-utf16-encoding", _build_isa("root a\n".encode("utf-16")), ("UTF-8",)),
    Case("isa-binary-junk", _build_isa(b"\x00\xff" + np.random.default_rng(0).bytes(4000)),
         ("UTF-8",)),
    Case("pickle-as-isa", _pickle_as_hierarchy("tree.txt"), ("pickle", "--trust")),
    Case("pickle-as-json", _pickle_as_hierarchy("tree.json"), ("pickle", "--trust")),
    Case("json-not-ours", _show("t.json", json.dumps({"tree": {"a": ["b"]}})),
         ("not a hafcls hierarchy",)),
    Case("json-top-level-list", _show("t.json", json.dumps([["r", "a"]])),
         ("not a hafcls hierarchy",)),
    Case("json-truncated", _show("t.json", _json()[:57]), ("not valid JSON",)),
    Case("json-edges-not-pairs", _show("t.json", _json(edges=[["r", "a", "x"]])), ("pairs",)),
    Case("json-classes-missing", _show("t.json", _json(classes=_DROP)), ("'classes'",)),
    Case("json-dangling-class", _show("t.json", _json(classes=["x", "ghost"])),
         ("not in the tree", "ghost")),
    Case("json-duplicate-class", _show("t.json", _json(classes=["x", "x"])),
         ("'x' is listed 2 times",)),
    Case("json-no-classes", _show("t.json", _json(classes=[])), ("no classes",)),
    Case("json-two-parents", _show("t.json", _json(edges=GOOD_JSON["edges"] + [["r", "x"]])),
         ("2 parents",)),
    Case("json-fingerprint-mismatch", _show("t.json", _json(fingerprint="0123456789abcdef")),
         ("fingerprint",)),
    Case("json-names-not-mapping", _show("t.json", _json(names=["a"])), ("names",)),
    Case("json-meta-not-mapping", _show("t.json", _json(meta=[1])), ("meta",)),
    Case("missing-file", _missing, ("neither a shipped hierarchy nor an existing file",)),
    Case("directory-as-file", _directory, ("neither a shipped hierarchy nor an existing file",)),
    Case("nltk-pickle-untrusted", _nltk_untrusted, ("arbitrary code", "--trust")),
    Case("nltk-pickle-trusted-junk", _nltk_trusted_junk, ("could not be unpickled",)),
    Case("nltk-pickle-not-a-tree", _nltk_trusted_not_a_tree, ("nltk.Tree",)),
    Case("wordnet-ids-binary", _wordnet_ids_binary, ("UTF-8|text",)),
    Case("output-parent-is-file", _output_parent_is_file, ("blocker",)),
    Case("output-is-directory", _output_is_directory, ("existing",)),
    Case("cifar100-folder-empty", _cifar_missing, ("No CIFAR-100 data", "cifar-100-python")),
    Case("cifar100-foreign-pickle", _cifar_foreign_pickle, ("not a valid CIFAR-100 pickle",)),
    Case("inat-truncated-json", _inat_not_json, ("JSON",)),
    Case("inat-json-without-categories", _inat_wrong_json, ("categor",)),
    Case("fgvc-folder-empty", _fgvc_missing, ("variants|FGVC",)),
]


@pytest.mark.parametrize("case", [c.param() for c in HIERARCHY_CASES])
def test_hierarchy_input(case: Case, tmp_path):
    run_case(case, tmp_path)


def test_huge_depth_works_or_is_refused_cleanly(tmp_path):
    """A 40,000-level chain (beyond int16 distances): either correct distances or exit 2."""
    path = tmp_path / "chain.txt"
    path.write_text(_CHAIN_40K)
    result = CliRunner().invoke(cli, ["hierarchy", "show", str(path)])
    if result.exit_code == 2:
        check_clean_failure(result.output, 2, (r"deep|depth|levels",), {}, tmp_path,
                            result.exception)
        return
    assert result.exit_code == 0, (result.exception, result.output[-500:])
    from hafcls.hierarchy import Hierarchy

    h = Hierarchy.from_isa_file(path)
    d = h.distance_matrix()
    assert h.height == 40_001 and d[0, 1] == 1 and d[1, 0] == 1 and d[0, 0] == 0


# ---------------------------------------------------------------------- config inputs

#: A tiny synthetic run: 4 classes, 16 px, test_resnet, CPU (a few seconds when it trains).
TINY = ["--data", "synthetic", "--method", "haframe", "--model", "test_resnet",
        "--epochs", "1", "--batch-size", "8", "--image-size", "16", "--workers", "0",
        "--device", "cpu", "--no-progress", "--set", "data_options.per_class=4",
        "--set", "data_options.branching=[2,2]"]


def _train_with_config(name: str, content: bytes | str, *extra: str, tiny: bool = True):
    """``hafcls train --config FILE ... -o run``: the run folder must not appear."""
    def build(tmp: Path):
        cfg = tmp / name
        cfg.write_bytes(content.encode() if isinstance(content, str) else content)
        run = tmp / "run"
        return ["train", "--config", cfg, *(TINY if tiny else []), *extra, "-o", run], [run, cfg]
    return build


def _train_flags(*flags: str, tiny: bool = True):
    """``hafcls train <tiny flags> FLAGS -o run``: the later flags win over the tiny ones."""
    def build(tmp: Path):
        run = tmp / "run"
        return ["train", *(TINY if tiny else []), *flags, "-o", run], [run]
    return build


def _train_output_is_file(tmp: Path):
    out = tmp / "results.txt"
    out.write_text("precious results\n")
    return ["train", *TINY, "-o", out], [out]


def _train_missing_config(tmp: Path):
    return ["train", "--config", tmp / "nope.yaml", *TINY, "-o", tmp / "run"], [tmp / "run"]


def _train_bad_hierarchy(tmp: Path):
    tree = tmp / "cycle.txt"
    tree.write_text("root a\na b\nb a\n")
    return ["train", *TINY, "--hierarchy", tree, "-o", tmp / "run"], [tmp / "run"]


def _train_method_without_model(tmp: Path):
    args = [a for a in TINY]
    i = args.index("--model")
    del args[i:i + 2]
    return ["train", *args, "-o", tmp / "run"], [tmp / "run"]


CONFIG_CASES = [
    Case("config-unknown-key", _train_with_config("c.yaml", "epoch: 3\n"),
         ("Unknown option 'epoch'", "did you mean 'epochs'")),
    Case("config-wrong-type", _train_with_config("c.yaml", "epochs: ten\n", tiny=False),
         ("'epochs'", "integer")),
    Case("config-negative-epochs", _train_with_config("c.yaml", "epochs: -1\n", tiny=False),
         ("'epochs'", "at least 1")),
    Case("config-zero-batch-size", _train_flags("--batch-size", "0"), ("'batch_size'",)),
    Case("config-negative-batch-size", _train_with_config("c.yaml", "batch_size: -8\n",
                                                          tiny=False), ("'batch_size'",)),
    Case("config-lr-nan", _train_with_config("c.yaml", "lr: .nan\n", tiny=False),
         ("'lr'", "finite")),
    Case("config-gamma-zero", _train_flags("--set", "method_options.gamma=0"), ("gamma", "> 0")),
    Case("config-gamma-negative", _train_flags("--set", "method_options.gamma=-2"),
         ("gamma", "> 0")),
    Case("config-s_min-not-psd", _train_flags("--set", "method_options.s_min=-0.99"),
         ("s_min", "semi-definite")),
    Case("config-s_min-above-one", _train_flags("--set", "method_options.s_min=1.5"),
         ("s_min", "below 1")),
    Case("config-unknown-method", _train_flags("--method", "hafram"), ("Unknown method",
                                                                      "haframe")),
    Case("config-unknown-model", _train_flags("--model", "resnet_does_not_exist"),
         ("resnet_does_not_exist",)),
    Case("config-missing-model", _train_method_without_model, ("No model", "--model")),
    Case("config-binary-junk", _train_with_config(
        "c.yaml", b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).bytes(600)),
         (r"c\.yaml",)),
    Case("config-yaml-list", _train_with_config("c.yaml", "- epochs\n- 3\n"), ("mapping",)),
    Case("config-yaml-syntax", _train_with_config("c.yaml", "epochs: [1,\n"),
         ("not valid YAML",)),
    Case("config-json-syntax", _train_with_config("c.json", "{epochs: 1"), ("not valid JSON",)),
    Case("config-missing-file", _train_missing_config, ("No such config file",)),
    Case("config-momentum-above-one", _train_flags("--momentum", "1.5"), ("momentum",)),
    Case("config-amp-unknown", _train_with_config("c.yaml", "amp: fp8\n"), ("'amp'", "bf16")),
    Case("config-amp-fp16-on-cpu", _train_flags("--amp", "fp16"), ("fp16", "CUDA")),
    Case("config-select-metric-unknown", _train_flags("--select-metric", "accuracy"),
         ("accuracy",)),
    Case("config-unknown-dataset", _train_with_config("c.yaml", "data: imagenet\n"),
         ("'data'", "synthetic")),
    Case("config-data-options-unknown", _train_flags("--set", "data_options.per_klass=3"),
         ("per_klass",)),
    Case("config-model-options-unknown", _train_flags("--set", "model_options.no_such_kw=1"),
         ("no_such_kw",)),
    Case("config-method-options-unknown", _train_flags("--set", "method_options.alpah=0.3"),
         ("alpah",)),
    Case("config-haframe-alpha-out-of-range", _train_flags("--set", "method_options.alpha=1.5"),
         ("alpha",)),
    Case("config-warmup-too-long", _train_flags("--warmup-epochs", "3"), ("warmup_epochs",)),
    Case("config-set-without-equals", _train_flags("--set", "epochs"), ("KEY=VALUE",)),
    Case("config-nesterov-with-adamw", _train_flags("--optimizer", "adamw", "--nesterov"),
         ("nesterov",)),
    Case("config-device-unknown", _train_flags("--device", "tpu"), ("device", "cuda")),
    Case("config-image-size-zero", _train_flags("--image-size", "0"), ("image_size",)),
    Case("config-negative-checkpoint-every", _train_flags("--checkpoint-every", "-5"),
         ("checkpoint_every",)),
    Case("config-output-is-file", _train_output_is_file, ("is a file|folder",)),
    Case("config-hierarchy-with-cycle", _train_bad_hierarchy, ("cycle",)),
]


@pytest.mark.parametrize("case", [c.param() for c in CONFIG_CASES])
def test_config_input(case: Case, tmp_path):
    run_case(case, tmp_path)


def _frame(*flags: str, tree: str = "root g1\nroot g2\ng1 a\ng1 b\ng2 c\n"):
    """``hafcls frame TREE FLAGS -o frame.safetensors``: the frame file must not appear."""
    def build(tmp: Path):
        path = tmp / "tree.txt"
        path.write_text(tree)
        out = tmp / "frame.safetensors"
        return ["frame", path, *flags, "-o", out], [out]
    return build


def _frame_into_folder(tmp: Path):
    path = tmp / "tree.txt"
    path.write_text("root a\nroot b\n")
    folder = tmp / "frames"
    folder.mkdir()
    return ["frame", path, "-o", folder], [folder]


FRAME_CASES = [
    Case("frame-gamma-zero", _frame("--gamma", "0"), ("gamma", "> 0")),
    Case("frame-gamma-negative", _frame("--gamma", "-1"), ("gamma", "> 0")),
    Case("frame-gamma-nan", _frame("--gamma", "nan"), ("gamma",)),
    Case("frame-s_min-not-psd", _frame("--s-min", "-0.99", tree="".join(
        f"root c{i}\n" for i in range(6))), ("semi-definite", "s_min >=")),
    Case("frame-s_min-not-a-number", _frame("--s-min", "lots"), ("s-min|s_min",)),
    Case("frame-s_min-one", _frame("--s-min", "1"), ("below 1",)),
    Case("frame-single-class", _frame(tree="root a\n"), ("at least 2 classes",)),
    Case("frame-tree-dim-too-large", _frame("--method", "tree", "--dim", "50"), ("dim",)),
    Case("frame-output-is-folder", _frame_into_folder, ("frames",)),
]


@pytest.mark.parametrize("case", [c.param() for c in FRAME_CASES])
def test_frame_input(case: Case, tmp_path):
    run_case(case, tmp_path)


def _frame_file(kind: str, tmp: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    from hafcls.frames import haframe
    from hafcls.hierarchy import Hierarchy

    path = tmp / "f.safetensors"
    h = Hierarchy.from_edges([("r", "a"), ("r", "b"), ("r", "c")])
    haframe(h).save(path)
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero-bytes":
        path.write_bytes(b"")
    elif kind == "random-bytes":
        path.write_bytes(np.random.default_rng(5).bytes(3000))
    elif kind == "safetensors-not-a-frame":
        save_file({"weight": torch.zeros(2, 2)}, str(path))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"weight": [1, 2]}))
    elif kind == "bad-metadata":
        save_file({"weight": torch.eye(3)}, str(path),
                  metadata={"format": "hafcls-frame", "hafcls": "{not json"})
    elif kind == "weight-not-2d":
        save_file({"weight": torch.zeros(3)}, str(path),
                  metadata={"format": "hafcls-frame", "hafcls": json.dumps({"kind": "haframe"})})
    return path


@pytest.mark.parametrize("kind", ["truncated", "zero-bytes", "random-bytes",
                                  "safetensors-not-a-frame", "pickle", "bad-metadata",
                                  "weight-not-2d", "other-hierarchy"])
def test_frame_file_input(kind, tmp_path):
    """Frame.load on damaged or foreign files raises HafclsError (nothing else)."""
    from hafcls.errors import HafclsError
    from hafcls.frames import Frame
    from hafcls.hierarchy import Hierarchy

    path = _frame_file(kind, tmp_path)
    other = Hierarchy.from_edges([("r", "x"), ("r", "y")]) if kind == "other-hierarchy" else None
    before = path.read_bytes()
    with pytest.raises(HafclsError) as info:
        Frame.load(path, hierarchy=other)
    assert "Fix:" in str(info.value)
    assert path.read_bytes() == before


# ---------------------------------------------------------------------- dataset inputs

#: explicit strict image decoding (a corrupt image is an error, not skipped)
STRICT = ("--set", "data_options.skip_corrupt=false")
FOLDER_TREE = "root g1\nroot g2\ng1 a\ng1 b\ng2 c\n"
FOLDER_CLASSES = ("a", "b", "c")


def _folder_args(root: Path, tree: Path, *extra: str) -> list:
    return ["train", "--data", "folder", "--data-dir", root, "--hierarchy", tree,
            "--method", "haframe", "--model", "test_resnet", "--epochs", "1",
            "--batch-size", "4", "--image-size", "16", "--workers", "0", "--device", "cpu",
            "--no-progress", *extra]


def _folder(mutate: Callable[[Path], None] | None = None, *extra: str, watch_run: bool = True,
            hierarchy: str = FOLDER_TREE):
    """A class-folder dataset (3 classes) changed by ``mutate``, trained into ``tmp/run``."""
    def build(tmp: Path):
        from data_fixtures import write_image_folder

        root = write_image_folder(tmp / "data", FOLDER_CLASSES)
        if mutate is not None:
            mutate(root)
        tree = tmp / "tree.txt"
        tree.write_text(hierarchy)
        run = tmp / "run"
        return [*_folder_args(root, tree, *extra), "-o", run], ([run] if watch_run else [])
    return build


def _rm(rel: str):
    def mutate(root: Path):
        import shutil

        target = root / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return mutate


def _add_class_folder(name: str):
    def mutate(root: Path):
        from data_fixtures import write_image_folder

        write_image_folder(root, [name], per_class={"train": 2})
    return mutate


def _empty_class_folders(root: Path):
    for p in root.rglob("*"):
        if p.is_file():
            p.unlink()


def _corrupt(kind: str):
    """Put one unreadable image into the training split."""
    def mutate(root: Path):
        from data_fixtures import write_corrupt_images

        empty, truncated = write_corrupt_images(root / "train" / "a")
        if kind == "zero-byte":
            truncated.unlink()
        elif kind == "truncated":
            empty.unlink()
        else:
            empty.unlink()
            truncated.unlink()
            (root / "train" / "a" / "notes.png").write_text("this is not a png\n")
    return mutate


def _folder_without_data_dir(tmp: Path):
    tree = tmp / "tree.txt"
    tree.write_text(FOLDER_TREE)
    args = _folder_args(tmp, tree)
    i = args.index("--data-dir")
    del args[i:i + 2]
    return [*args, "-o", tmp / "run"], [tmp / "run"]


def _folder_without_hierarchy(tmp: Path):
    from data_fixtures import write_image_folder

    root = write_image_folder(tmp / "data", FOLDER_CLASSES)
    args = _folder_args(root, tmp)
    i = args.index("--hierarchy")
    del args[i:i + 2]
    return [*args, "-o", tmp / "run"], [tmp / "run"]


def _data_dir_is_file(tmp: Path):
    tree = tmp / "tree.txt"
    tree.write_text(FOLDER_TREE)
    blob = tmp / "data.zip"
    blob.write_bytes(b"PK\x03\x04 half a zip")
    return [*_folder_args(blob, tree), "-o", tmp / "run"], [tmp / "run"]


def _real_dataset(name: str, writer: str, mutate: Callable[[Path], None], *extra: str,
                  watch_run: bool = True):
    """cifar100 / fgvc-aircraft / inat2019 written by tests/data_fixtures.py, then damaged."""
    def build(tmp: Path):
        import data_fixtures

        root = tmp / "data"
        getattr(data_fixtures, writer)(root)
        mutate(root)
        run = tmp / "run"
        return ["train", "--data", name, "--data-dir", root, "--method", "ce",
                "--model", "test_resnet", "--epochs", "1", "--batch-size", "4",
                "--image-size", "16", "--workers", "0", "--device", "cpu", "--no-progress",
                *extra, "-o", run], ([run] if watch_run else [])
    return build


def _truncate(rel: str, keep: float = 0.5):
    def mutate(root: Path):
        path = root / rel
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return mutate


def _edit_json(rel: str, edit: Callable[[dict], None]):
    def mutate(root: Path):
        path = root / rel
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
    return mutate


def _unknown_category(doc: dict) -> None:
    doc["annotations"][0]["category_id"] = 999


DATASET_CASES = [
    Case("folder-data-dir-missing", _folder(_rm("")), ("No 'train' folder",)),
    Case("folder-data-dir-is-file", _data_dir_is_file, ("data.zip",)),
    Case("folder-without-data-dir", _folder_without_data_dir, ("needs data_dir", "--data-dir")),
    Case("folder-without-hierarchy", _folder_without_hierarchy, ("needs a hierarchy",)),
    Case("folder-missing-val-split", _folder(_rm("val")), ("No 'val' folder",)),
    Case("folder-missing-test-split", _folder(_rm("test")), ("No 'test' folder",)),
    Case("folder-label-outside-tree", _folder(_add_class_folder("ghost")),
         ("not classes of the hierarchy", "ghost")),
    Case("folder-no-images", _folder(_empty_class_folders), ("no images",)),
    Case("folder-download-refused", _folder(None, "--download"), ("cannot be downloaded",)),
    Case("folder-truncated-image-strict", _folder(_corrupt("truncated"), *STRICT, watch_run=False),
         (r"truncated\.jpg", "skip")),
    Case("folder-truncated-image-strict-workers",
         _folder(_corrupt("truncated"), "--workers", "2", *STRICT, watch_run=False),
         (r"truncated\.jpg", "skip")),
    Case("folder-zero-byte-image-strict", _folder(_corrupt("zero-byte"), *STRICT, watch_run=False),
         (r"empty\.jpg", "0 bytes|empty", "skip")),
    Case("folder-text-as-image-strict", _folder(_corrupt("text"), *STRICT, watch_run=False),
         (r"notes\.png", "skip")),
    Case("cifar100-missing-train-file", _real_dataset("cifar100", "write_cifar100",
                                                      _rm("cifar-100-python/train")),
         ("CIFAR-100",)),
    Case("cifar100-truncated-train-file", _real_dataset(
        "cifar100", "write_cifar100", _truncate("cifar-100-python/train")),
         ("not a valid CIFAR-100 pickle|re-download",)),
    Case("fgvc-missing-split-file", _real_dataset(
        "fgvc-aircraft", "write_fgvc", _rm("fgvc-aircraft-2013b/data/images_variant_val.txt")),
         ("images_variant_val.txt",)),
    Case("fgvc-missing-images-folder", _real_dataset(
        "fgvc-aircraft", "write_fgvc", _rm("fgvc-aircraft-2013b/data/images"), watch_run=False),
         ("images",)),
    Case("inat-missing-val-json", _real_dataset("inat2019", "write_inat2019",
                                                _rm("val2019.json")), ("val2019.json",)),
    Case("inat-truncated-train-json", _real_dataset("inat2019", "write_inat2019",
                                                    _truncate("train2019.json")),
         ("train2019.json", "JSON")),
    Case("inat-annotation-unknown-category", _real_dataset(
        "inat2019", "write_inat2019", _edit_json("train2019.json", _unknown_category)),
         ("999",)),
]


@pytest.mark.parametrize("case", [c.param() for c in DATASET_CASES])
def test_dataset_input(case: Case, tmp_path):
    run_case(case, tmp_path)


def _corrupt_folder(tmp: Path) -> tuple[Path, Path]:
    """The 3-class folder dataset with a zero-byte and a truncated image in train/a."""
    from data_fixtures import write_corrupt_images, write_image_folder

    root = write_image_folder(tmp / "data", FOLDER_CLASSES)
    write_corrupt_images(root / "train" / "a")
    tree = tmp / "tree.txt"
    tree.write_text(FOLDER_TREE)
    return root, tree


@pytest.mark.parametrize("mode,workers", [("default", 0), ("skip", 1), ("flag", 0)])
def test_corrupt_images_are_skipped_and_counted(tmp_path, mode, workers):
    """By default (and with skip_corrupt=true) training goes on without the 2 unreadable files
    and records how many it skipped with each epoch."""
    root, tree = _corrupt_folder(tmp_path)
    run = tmp_path / "run"
    extra = {"default": [], "skip": ["--set", "data_options.skip_corrupt=true"],
             "flag": ["--skip-corrupt"]}[mode]
    args = _folder_args(root, tree, "--epochs", "2", "--workers", str(workers), *extra)
    result = CliRunner().invoke(cli, [*map(str, args), "-o", str(run)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["train"]["images"] for r in records] == [9, 9]  # 11 files, 2 unreadable
    # the count must be recorded with the epoch (not only printed as a warning)
    skipped = [{k: v for k, v in r["train"].items() if "skip" in k} for r in records]
    assert all(list(s.values()) == [2] for s in skipped), f"no skipped count: {records[0]}"
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("strict", [STRICT, ("--strict-images",)], ids=["option", "flag"])
def test_corrupt_image_strict_names_the_file_and_trains_nothing(tmp_path, strict):
    root, tree = _corrupt_folder(tmp_path)
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [*map(str, _folder_args(root, tree, *strict)), "-o",
                                      str(run)])
    check_clean_failure(result.output, result.exit_code, (r"empty\.jpg|truncated\.jpg",
                                                          "skip"), {}, tmp_path,
                        result.exception)
    assert not (run / "checkpoints" / "last.pt").exists()


def test_failed_start_can_be_rerun_with_the_fix(tmp_path):
    """A run that failed before its first checkpoint (strict mode hit a corrupt image) must not
    block the command that applies the suggested fix (skip_corrupt), fresh or with --resume."""
    root, tree = _corrupt_folder(tmp_path)
    run = tmp_path / "run"
    base = [*map(str, _folder_args(root, tree)), "-o", str(run)]
    first = CliRunner().invoke(cli, [*base, *STRICT])
    assert first.exit_code == 2, first.output
    fixed = CliRunner().invoke(cli, [*base, "--set", "data_options.skip_corrupt=true"])
    resumed = fixed
    if fixed.exit_code != 0:
        resumed = CliRunner().invoke(cli, [*base, "--set", "data_options.skip_corrupt=true",
                                           "--resume"])
    assert 0 in (fixed.exit_code, resumed.exit_code), (
        f"rerun:\n{fixed.output}\nresume:\n{resumed.output}")
    assert (run / "checkpoints" / "last.pt").is_file()


# ---------------------------------------------------------------------- checkpoint inputs

TINY_CONFIG = {"data": "synthetic", "method": "haframe", "model": "test_resnet", "epochs": 1,
               "batch_size": 8, "image_size": 16, "workers": 0, "device": "cpu",
               "progress": False, "data_options": {"per_class": 4, "branching": [2, 2]}}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished one-epoch tiny run (best.pt, last.pt, config.json, ...)."""
    from hafcls.engine.config import TrainConfig
    from hafcls.engine.train import train

    run = tmp_path_factory.mktemp("trained") / "run"
    train(TrainConfig.from_dict({**TINY_CONFIG, "output": str(run)}), log=lambda msg: None)
    assert (run / "checkpoints" / "best.pt").is_file()
    return run


def _sample_image(tmp: Path) -> Path:
    from PIL import Image

    path = tmp / "photo.png"
    Image.new("RGB", (20, 20), (200, 30, 30)).save(path)
    return path


def _bad_ckpt(make: Callable[[Path, Path], None], command: str = "evaluate"):
    """Write a damaged/foreign checkpoint with ``make(path, trained_run)`` and use it."""
    def build(tmp: Path, run: Path):
        path = tmp / "model.pt"
        make(path, run)
        out = tmp / "metrics.json"
        if command == "evaluate":
            argv = ["evaluate", path, "--device", "cpu", "--workers", "0", "--json", out]
        else:
            argv = ["predict", path, _sample_image(tmp), "--device", "cpu"]
        return argv, [out, path]
    return build


def _truncated(path: Path, run: Path):
    data = (run / "checkpoints" / "best.pt").read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _zero_bytes(path: Path, run: Path):
    path.write_bytes(b"")


def _random_bytes(path: Path, run: Path):
    path.write_bytes(np.random.default_rng(3).bytes(5000))


def _hierarchy_json_as_ckpt(path: Path, run: Path):
    path.write_bytes((run / "hierarchy.json").read_bytes())


def _plain_state_dict(path: Path, run: Path):
    import torch

    torch.save({"weight": torch.zeros(3, 3)}, path)


def _safetensors_as_ckpt(path: Path, run: Path):
    import torch
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3, 3)}, str(path))


def _malicious_pickle(path: Path, run: Path):
    import torch

    torch.save({"format": "hafcls-checkpoint", "payload": _Evil(path.parent / "PWNED")}, path)


def _edited(edit: Callable[[dict], None]):
    def make(path: Path, run: Path):
        import torch

        ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
        edit(ckpt)
        torch.save(ckpt, path)
    return make


def _newer_version(ckpt: dict):
    ckpt["version"] = 99


def _no_meta(ckpt: dict):
    del ckpt["meta"]


def _other_backbone_meta(ckpt: dict):
    """Weights of test_resnet, metadata claiming resnet10t (a hand-assembled checkpoint)."""
    meta = json.loads(ckpt["meta"])
    for key in ("model_config", "config"):
        for name in ("backbone", "model"):
            if name in meta.get(key, {}):
                meta[key][name] = "resnet10t"
    ckpt["meta"] = json.dumps(meta)


def _bad_hierarchy_meta(ckpt: dict):
    meta = json.loads(ckpt["meta"])
    meta["hierarchy"]["edges"].append([meta["hierarchy"]["classes"][0],
                                       meta["hierarchy"]["root"]])
    meta["hierarchy"].pop("fingerprint", None)
    ckpt["meta"] = json.dumps(meta)


def _weights_missing(ckpt: dict):
    ckpt["model"] = {k: v for i, (k, v) in enumerate(ckpt["model"].items()) if i % 2}


def _evaluate_other_hierarchy(tmp: Path, run: Path):
    other = tmp / "other.txt"
    other.write_text("root p\nroot q\np x\n")
    return ["evaluate", run, "--hierarchy", other, "--device", "cpu", "--workers", "0",
            "--json", tmp / "m.json"], [tmp / "m.json"]


def _evaluate_missing(tmp: Path, run: Path):
    return ["evaluate", tmp / "no-such-run", "--device", "cpu"], [tmp / "no-such-run"]


def _evaluate_empty_run_folder(tmp: Path, run: Path):
    (tmp / "empty-run").mkdir()
    return ["evaluate", tmp / "empty-run", "--device", "cpu"], [tmp / "empty-run"]


def _copy_run(tmp: Path, run: Path) -> Path:
    import shutil

    copy = tmp / "run"
    shutil.copytree(run, copy)
    return copy


def _resume_with_truncated_last(tmp: Path, run: Path):
    copy = _copy_run(tmp, run)
    last = copy / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    return ["train", "-o", copy, "--resume", "--epochs", "2", "--no-progress"], [copy]


def _resume_with(*flags: str):
    def build(tmp: Path, run: Path):
        copy = _copy_run(tmp, run)
        return ["train", "-o", copy, "--resume", "--epochs", "2", "--no-progress",
                *flags], [copy]
    return build


def _resume_other_hierarchy(tmp: Path, run: Path):
    other = tmp / "other.txt"
    other.write_text("root p\nroot q\np x\np y\nq z\n")
    return _resume_with("--hierarchy", str(other))(tmp, run)


def _pretrained_file(make: Callable[[Path, Path], None]):
    def build(tmp: Path, run: Path):
        weights = tmp / "weights.pth"
        make(weights, run)
        out = tmp / "new-run"
        return ["train", *TINY, "--pretrained-file", weights, "-o", out], [out]
    return build


def _other_backbone_weights(path: Path, run: Path):
    import timm
    import torch

    torch.save(timm.create_model("resnet10t", num_classes=0).state_dict(), path)


def _evaluate_json_into_folder(tmp: Path, run: Path):
    folder = tmp / "reports"
    folder.mkdir()
    (folder / "old.json").write_text("{}\n")
    return ["evaluate", run, "--device", "cpu", "--workers", "0", "--json", folder], [folder]


def _predict_image(kind: str):
    def build(tmp: Path, run: Path):
        img = tmp / "photo.jpg"
        if kind == "truncated":
            good = _sample_image(tmp)
            img.write_bytes(good.read_bytes()[:60])
        elif kind == "text":
            img.write_text("not an image\n")
        return ["predict", run, img, "--device", "cpu"], []
    return build


CHECKPOINT_CASES = [
    Case("ckpt-truncated", _bad_ckpt(_truncated), ("not a readable checkpoint",)),
    Case("ckpt-zero-bytes", _bad_ckpt(_zero_bytes), ("not a readable checkpoint",)),
    Case("ckpt-random-bytes", _bad_ckpt(_random_bytes), ("not a readable checkpoint",)),
    Case("ckpt-hierarchy-json", _bad_ckpt(_hierarchy_json_as_ckpt), ("checkpoint",)),
    Case("ckpt-safetensors-file", _bad_ckpt(_safetensors_as_ckpt), ("checkpoint",)),
    Case("ckpt-plain-state-dict", _bad_ckpt(_plain_state_dict), ("not a hafcls checkpoint",)),
    Case("ckpt-malicious-pickle", _bad_ckpt(_malicious_pickle), ("not a readable checkpoint",)),
    Case("ckpt-newer-format", _bad_ckpt(_edited(_newer_version)), ("newer hafcls",)),
    Case("ckpt-no-metadata", _bad_ckpt(_edited(_no_meta)), ("metadata",)),
    Case("ckpt-other-backbone-than-meta", _bad_ckpt(_edited(_other_backbone_meta)),
         ("resnet10t|backbone|weights",)),
    Case("ckpt-weights-missing", _bad_ckpt(_edited(_weights_missing)), ("weights|missing",)),
    Case("ckpt-hierarchy-with-cycle", _bad_ckpt(_edited(_bad_hierarchy_meta)), ("cycle",)),
    Case("ckpt-truncated-predict", _bad_ckpt(_truncated, "predict"),
         ("not a readable checkpoint",)),
    Case("ckpt-other-hierarchy", _evaluate_other_hierarchy, ("different hierarchy",)),
    Case("ckpt-missing-path", _evaluate_missing, ("No such run folder or checkpoint",)),
    Case("ckpt-empty-run-folder", _evaluate_empty_run_folder, ("no checkpoints",)),
    Case("resume-truncated-last", _resume_with_truncated_last,
         ("last.pt", "not a readable checkpoint")),
    Case("resume-other-backbone", _resume_with("--model", "resnet10t"),
         ("Cannot resume", "model")),
    Case("resume-other-method", _resume_with("--method", "ce"), ("Cannot resume", "method")),
    Case("resume-other-hierarchy", _resume_other_hierarchy, ("Cannot resume", "hierarchy")),
    Case("pretrained-file-other-backbone", _pretrained_file(_other_backbone_weights),
         ("weights|backbone|resnet10t|test_resnet",)),
    Case("pretrained-file-random-bytes", _pretrained_file(_random_bytes), ("weights.pth",)),
    Case("pretrained-file-malicious-pickle", _pretrained_file(_malicious_pickle),
         ("weights.pth",)),
    Case("evaluate-json-into-folder", _evaluate_json_into_folder, ("reports",)),
    Case("predict-truncated-image", _predict_image("truncated"), (r"photo\.jpg",)),
    Case("predict-text-as-image", _predict_image("text"), (r"photo\.jpg",)),
    Case("predict-missing-image", _predict_image("missing"), (r"photo\.jpg",)),
]


@pytest.mark.parametrize("case", [c.param() for c in CHECKPOINT_CASES])
def test_checkpoint_input(case: Case, tmp_path, trained_run):
    argv, watched = case.build(tmp_path, trained_run)
    before = {Path(p): snapshot(Path(p)) for p in watched}
    run_before = snapshot(trained_run)
    result = CliRunner().invoke(cli, [str(a) for a in argv])
    check_clean_failure(result.output, result.exit_code, case.keywords, before, tmp_path,
                        result.exception)
    assert snapshot(trained_run) == run_before
    assert not (tmp_path / "PWNED").exists(), "a checkpoint loader executed a pickle"


# ---------------------------------------------------------------------- real processes

SUBPROCESS_CASES = {c.id: c for c in HIERARCHY_CASES + CONFIG_CASES + DATASET_CASES}


@pytest.mark.parametrize("case_id", ["isa-cycle", "pickle-as-json", "config-unknown-key",
                                     "config-s_min-not-psd", "folder-label-outside-tree",
                                     "folder-truncated-image-strict-workers"])
def test_subprocess_stderr_is_one_message(case_id, tmp_path):
    """Through a real process: exit 2, stderr holds the message only (no traceback, no
    warnings dump), stdout nothing that looks like an error."""
    case = SUBPROCESS_CASES[case_id]
    argv, watched = case.build(tmp_path)
    before = {Path(p): snapshot(Path(p)) for p in watched}
    proc = run_subprocess(argv, tmp_path)
    err = proc.stderr
    check_clean_failure(err, proc.returncode, case.keywords, before, tmp_path)
    assert "Traceback" not in proc.stdout
    last = [line for line in err.splitlines() if line.strip()]
    assert last and last[-1].startswith(("Error:", " ", "Fix")) or "Error:" in last[-1], err


def test_python_dash_m_entry_point(tmp_path):
    """``python -m hafcls.cli.main`` runs the CLI (the documented fallback when the console
    script is not on PATH) and keeps the exit-code contract."""
    tree = tmp_path / "cycle.txt"
    tree.write_text("root a\na b\nb a\n")
    proc = run_subprocess(["hierarchy", "show", tree], tmp_path, entry="module")
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "cycle" in proc.stderr and "Traceback" not in proc.stderr
