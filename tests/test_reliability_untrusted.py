"""Untrusted files: no code path deserialises unsafely, and no path from a config or a hierarchy
file makes a run write outside its run folder.

1. A source scan (``ast``) of ``hafcls/**/*.py`` and ``scripts/**/*.py`` for unsafe loaders:
   ``pickle``/``cPickle``/``dill``/``marshal``/``shelve``/``joblib`` loads and ``Unpickler``,
   ``torch.load`` without ``weights_only=True``, ``numpy.load(allow_pickle=...)`` other than
   ``False``, ``yaml.load``/``unsafe_load``/``full_load`` without a safe loader, ``eval``/``exec``
   and ``shell=True``. Only two files may unpickle: the explicit trust converter
   (``hierarchy/sources/nltk_pickle.py``, behind ``trust=True``) and the CIFAR reader
   (``hierarchy/sources/cifar100.py``, a ``pickle.Unpickler`` subclass whose ``find_class``
   allows a fixed list). The scanner is itself tested on small snippets so that it can fail.
2. Malicious pickles (whose unpickling would create a sentinel file) given as a hierarchy, a CIFAR
   file, a checkpoint, a frame and pretrained weights: refused, sentinel absent.
3. Path containment: options that would name files (checkpoint/log names) do not exist and are
   refused; hierarchy class ids and names such as ``../../evil`` or ``/tmp/x`` never become
   paths; everything a run writes stays inside its run folder.
"""

from __future__ import annotations

import ast
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from hafcls.cli.main import cli

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("hafcls", "scripts")


#: files allowed to unpickle, and why
UNPICKLE_ALLOWED = {
    "hafcls/hierarchy/sources/nltk_pickle.py": "explicit trust converter (trust=True)",
    "hafcls/hierarchy/sources/cifar100.py": "restricted Unpickler with a find_class allowlist",
}

_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve",
                   "joblib", "pickle5"}
_PICKLE_CALLS = {"load", "loads", "Unpickler", "open", "_load", "_loads"}
_SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


class _Scanner(ast.NodeVisitor):
    """Collect unsafe deserialisation / code-execution calls of one module."""

    def __init__(self, path: str):
        self.path = path
        self.found: list[Finding] = []
        self.aliases: dict[str, str] = {}  # local name -> dotted origin ("np" -> "numpy")

    # -- imports: remember what each local name refers to
    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else \
                a.name.split(".")[0]
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for a in node.names:
            self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        self.generic_visit(node)

    def _dotted(self, node: ast.AST) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(self.aliases.get(node.id, node.id))
        return ".".join(reversed(parts))

    def _flag(self, node: ast.AST, what: str) -> None:
        self.found.append(Finding(self.path, node.lineno, what))

    # -- subclassing pickle.Unpickler counts as unpickling
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for base in node.bases:
            name = self._dotted(base) or ""
            if name.split(".")[0] in _PICKLE_MODULES and name.endswith("Unpickler"):
                self._flag(node, f"class {node.name} subclasses {name}")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name = self._dotted(node.func) or ""
        head, _, tail = name.rpartition(".")
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if head.split(".")[0] in _PICKLE_MODULES and tail in _PICKLE_CALLS:
            self._flag(node, f"{name}()")
        elif name in ("torch.load", "torch.serialization.load"):
            value = kw.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                self._flag(node, "torch.load() without weights_only=True")
        elif name in ("numpy.load", "numpy.lib.npyio.load"):
            value = kw.get("allow_pickle")
            if value is not None and not (isinstance(value, ast.Constant)
                                          and value.value is False):
                self._flag(node, "numpy.load(allow_pickle=...) other than False")
        elif name in ("yaml.unsafe_load", "yaml.full_load", "yaml.unsafe_load_all",
                      "yaml.full_load_all"):
            self._flag(node, f"{name}()")
        elif name in ("yaml.load", "yaml.load_all"):
            loader = kw.get("Loader", node.args[1] if len(node.args) > 1 else None)
            loader_name = (self._dotted(loader) or "") if loader is not None else ""
            if loader_name.rpartition(".")[2] not in _SAFE_YAML_LOADERS:
                self._flag(node, f"{name}() without a safe Loader")
        elif name in ("eval", "exec", "builtins.eval", "builtins.exec"):
            self._flag(node, f"{name}()")
        elif "shell" in kw and isinstance(kw["shell"], ast.Constant) and kw["shell"].value:
            self._flag(node, f"{name}(shell=True)")
        elif name in ("os.system", "os.popen"):
            self._flag(node, f"{name}()")
        self.generic_visit(node)


def scan_source(text: str, path: str = "<snippet>") -> list[Finding]:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(text, filename=path))
    return scanner.found


def scanned_files() -> list[Path]:
    files = []
    for top in SCANNED:
        files += sorted((REPO / top).rglob("*.py"))
    return files


# ---------------------------------------------------------------------- the scanner itself
@pytest.mark.parametrize("snippet", [
    "import pickle\npickle.load(open('f', 'rb'))",
    "import pickle as p\np.loads(b'')",
    "from pickle import loads\nloads(b'')",
    "import pickle\nclass U(pickle.Unpickler):\n    pass",
    "import torch\ntorch.load('x.pt')",
    "import torch\ntorch.load('x.pt', weights_only=False)",
    "from torch import load\nload('x.pt', map_location='cpu')",
    "import torch\nflag = True\ntorch.load('x.pt', weights_only=flag)",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
    "import yaml\nyaml.load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import yaml\nyaml.unsafe_load(text)",
    "eval('1 + 1')",
    "exec('x = 1')",
    "import subprocess\nsubprocess.run('ls', shell=True)",
    "import dill\ndill.load(f)",
    "import joblib\njoblib.load('m.pkl')",
])
def test_scanner_flags_unsafe_snippets(snippet):
    assert scan_source(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import torch\ntorch.load('x.pt', weights_only=True, map_location='cpu')",
    "import numpy as np\nnp.load('a.npz', allow_pickle=False)\nnp.load('b.npy')",
    "import yaml\nyaml.safe_load(text)\nyaml.load(text, Loader=yaml.SafeLoader)",
    "import pickle\ndata = pickle.dumps({'a': 1})",
    "import json\njson.loads('{}')",
    "model.eval()",
    "from safetensors.torch import load_file\nload_file('w.safetensors')",
])
def test_scanner_accepts_safe_snippets(snippet):
    assert scan_source(snippet) == []


# ---------------------------------------------------------------------- the code base
def test_no_unsafe_deserialisation_in_the_source():
    files = scanned_files()
    assert len(files) > 20, "the scan found almost no files: wrong root?"
    bad = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        found = scan_source(path.read_text(encoding="utf-8"), rel)
        if rel in UNPICKLE_ALLOWED:
            found = [f for f in found if "pickle" not in f.what.lower()
                     and "unpickler" not in f.what.lower()]
        bad += found
    assert not bad, "unsafe calls:\n" + "\n".join(map(str, bad))


def test_allowed_unpicklers_are_restricted():
    """The two allowed files: the CIFAR reader's Unpickler overrides find_class with an
    allowlist; the nltk converter unpickles only after checking ``trust``."""
    cifar = ast.parse((REPO / "hafcls/hierarchy/sources/cifar100.py").read_text())
    classes = [n for n in ast.walk(cifar) if isinstance(n, ast.ClassDef)
               and any("Unpickler" in ast.unparse(b) for b in n.bases)]
    assert classes, "cifar100.py no longer subclasses pickle.Unpickler"
    for cls in classes:
        methods = {f.name for f in cls.body if isinstance(f, ast.FunctionDef)}
        assert "find_class" in methods, f"{cls.name} does not restrict find_class"
    from hafcls.hierarchy.sources import cifar100 as mod

    assert ("builtins", "eval") not in mod._ALLOWED and ("os", "system") not in mod._ALLOWED
    assert all(m.split(".")[0] in {"numpy", "_codecs"} for m, _ in mod._ALLOWED)

    nltk_src = (REPO / "hafcls/hierarchy/sources/nltk_pickle.py").read_text()
    tree = ast.parse(nltk_src)
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                and n.name == "from_nltk_tree_pickle")
    body = ast.unparse(func)
    assert body.index("if not trust") < body.index("pickle.load"), \
        "the trust check must come before unpickling"


# ---------------------------------------------------------------------- malicious files
class _Evil:
    """Unpickling this calls ``open(sentinel, "w")``: a file appears if a loader ran it."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def _evil_bytes(sentinel: Path) -> bytes:
    return pickle.dumps(_Evil(sentinel), protocol=2)


def test_malicious_pickles_are_never_executed(tmp_path):
    import torch

    from hafcls.errors import HafclsError

    sentinel = tmp_path / "PWNED"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(_evil_bytes(sentinel))
    attempts = {}

    def attempt(name, fn):
        try:
            fn()
        except HafclsError as err:
            attempts[name] = str(err)
        except Exception as err:  # noqa: BLE001 -- any refusal is fine here; execution is not
            attempts[name] = f"{type(err).__name__}: {err}"
        else:
            attempts[name] = "accepted"
        assert not sentinel.exists(), f"{name} executed a pickle"

    from hafcls.hierarchy import Hierarchy, from_nltk_tree_pickle, load
    from hafcls.hierarchy.sources.cifar100 import read_cifar_pickle

    for suffix in (".json", ".txt", ".pkl"):
        copy = evil.with_suffix(suffix)
        copy.write_bytes(evil.read_bytes())
        attempt(f"hierarchy{suffix}", lambda c=copy: load(c))
    attempt("from_json", lambda: Hierarchy.from_json(evil))
    attempt("nltk untrusted", lambda: from_nltk_tree_pickle(evil))
    attempt("cifar", lambda: read_cifar_pickle(evil))

    torch.save({"format": "hafcls-checkpoint", "x": _Evil(sentinel)}, tmp_path / "evil.pt")
    from hafcls.engine.checkpoint import load_checkpoint

    attempt("checkpoint", lambda: load_checkpoint(tmp_path / "evil.pt"))
    from hafcls.frames import Frame

    attempt("frame", lambda: Frame.load(tmp_path / "evil.pt"))
    attempt("frame-pickle", lambda: Frame.load(evil))
    from hafcls.models import create

    attempt("pretrained_file", lambda: create("test_resnet", num_classes=3, head="linear",
                                              pretrained_file=str(tmp_path / "evil.pt")))
    assert all(v != "accepted" for v in attempts.values()), attempts


# ---------------------------------------------------------------------- path containment
def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


TINY = ["--data", "synthetic", "--method", "haframe", "--model", "test_resnet",
        "--epochs", "1", "--batch-size", "8", "--image-size", "16", "--workers", "0",
        "--device", "cpu", "--no-progress", "--set", "data_options.per_class=3"]

#: what a run folder may hold (temporary files of atomic writes excluded)
RUN_FILES = {"config.json", "hierarchy.json", "metrics.jsonl", "metrics.json",
             "checkpoints/last.pt", "checkpoints/best.pt", ".lock"}


@pytest.mark.parametrize("key,value", [
    ("checkpoint", "../../evil.pt"), ("checkpoint_name", "/tmp/evil.pt"),
    ("log_file", "../evil.log"), ("checkpoint_dir", "/"), ("metrics_file", "../../m.json"),
])
def test_config_cannot_name_files(tmp_path, key, value):
    """No option names a file inside the run: such keys are unknown and refused up front."""
    work = tmp_path / "work"
    work.mkdir()
    cfg = work / "c.yaml"
    cfg.write_text(f"{key}: {json.dumps(value)}\n")
    before = _files_under(tmp_path)
    result = CliRunner().invoke(cli, ["train", "--config", str(cfg), *TINY,
                                      "-o", str(work / "run")])
    assert result.exit_code == 2 and "Unknown option" in result.output, result.output
    assert _files_under(tmp_path) == before


NASTY_TREE = ("root ../../evil\nroot /tmp/abs\n../../evil ..\n../../evil a/b\n"
              "/tmp/abs ~/x\n/tmp/abs c\n")


def test_hierarchy_ids_never_become_paths(tmp_path, monkeypatch):
    """Class ids like '..', 'a/b', '~/x' and a meta name '../../x': a full run plus evaluate and
    predict write only the fixed run files, all inside the run folder."""
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    tree = work / "tree.txt"
    tree.write_text(NASTY_TREE)
    from hafcls.hierarchy import Hierarchy

    h = Hierarchy.from_isa_file(tree, meta={"name": "../../x"})
    assert set(h.classes) == {"..", "a/b", "~/x", "c"}
    hjson = work / "nasty.json"
    h.to_json(hjson)
    before = _files_under(tmp_path)
    run = work / "run"
    result = CliRunner().invoke(cli, ["train", *TINY, "--hierarchy", str(hjson), "-o", "run"])
    assert result.exit_code == 0, result.output
    for args in (["evaluate", "run", "--device", "cpu", "--workers", "0"],):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, r.output
    written = _files_under(tmp_path) - before
    inside = {p for p in written if p.startswith("a/b/work/run/")}
    assert written == inside, f"files outside the run folder: {sorted(written - inside)}"
    names = {p[len("a/b/work/run/"):] for p in inside}
    assert names <= RUN_FILES, f"unexpected files: {sorted(names - RUN_FILES)}"
    assert run.is_dir() and not (tmp_path / "x").exists() and not (work / "~").exists()


def test_existing_folder_that_is_not_a_run_is_not_clobbered(tmp_path):
    """--output pointing at a folder of the user's own files with the run's file names
    (metrics.json, hierarchy.json): refused, or those files survive."""
    folder = tmp_path / "project"
    folder.mkdir()
    mine = {"metrics.json": '{"my": "results"}\n', "hierarchy.json": '{"my": "tree"}\n',
            "metrics.jsonl": '{"mine": 1}\n'}
    for name, text in mine.items():
        (folder / name).write_text(text)
    result = CliRunner().invoke(cli, ["train", *TINY, "-o", str(folder)])
    if result.exit_code == 0:
        lost = [n for n, t in mine.items() if (folder / n).read_text() != t]
        assert not lost, f"training overwrote the user's files {lost}"
    else:
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert all((folder / n).read_text() == t for n, t in mine.items())


def test_compare_refuses_method_names_that_are_paths(tmp_path):
    """`hafcls compare` builds run folders from method names: a name with '..' or '/' must be
    refused before any folder is made."""
    import click

    if "compare" not in cli.list_commands(click.Context(cli)):
        pytest.skip("no compare command")
    out = tmp_path / "exp"
    for bad in ("../../evil", "/tmp/evil"):
        tiny = [a for a in TINY if a not in ("--method", "haframe")]
        args = ["compare", "--methods", bad, "--seeds", "1", "--no-plots", *tiny, "-o", str(out)]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    assert not out.exists() or not any(out.rglob("*evil*"))
    assert not (tmp_path.parent / "evil").exists()
