"""WordNet hierarchies from ImageNet-style ids (``n01440764``) via nltk.

WordNet is a DAG: a synset may have several hypernyms (and instance hypernyms). A label tree needs
one parent per node, chosen by a fixed per-node rule so that the union of all class paths is a
tree (choosing whole paths per class would not be: two classes could reach the same synset
through different parents):

- ``rule="shortest"`` (default): the hypernym closest to the root (smallest ``min_depth``), ties
  broken by synset name; this gives the shallowest tree.
- ``rule="first"``: the first hypernym pointer (``@`` or ``@i``) listed in the WordNet data file.
  (nltk's ``hypernyms()`` order comes from a set and changes between processes, so the file is
  read directly.)

``prune_chains=True`` removes internal non-class nodes with a single child (unary chains), which
shortens paths and so changes distances; both options are recorded in the hierarchy's ``meta``.

Finding WordNet: nltk's data path first; else a system WordNet 3.0 folder (``WNSEARCHDIR``, then
Debian/Ubuntu's ``/usr/share/wordnet``) which is prepared for nltk in a user cache folder (nltk
wants ``<dir>/corpora/wordnet/`` on its data path, a ``lexnames`` file Debian does not ship, and
no group/world-writable files).
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

from hafcls.errors import HafclsError
from hafcls.hierarchy.label_tree import Hierarchy

RULES = ("shortest", "first")
_WNID = re.compile(r"^n\d{8}$")
_SYSTEM_DIRS = ("/usr/share/wordnet", "/usr/local/share/wordnet", "/usr/local/WordNet-3.0/dict")
_INSTALL_HINT = (
    "install WordNet 3.0: on Debian/Ubuntu `sudo apt-get install wordnet-base "
    "wordnet-sense-index` (or set WNSEARCHDIR to a WordNet 3.0 dict folder), or with nltk "
    "`python -m nltk.downloader wordnet` (this downloads)."
)
# nltk's lexnames: the 45 lexicographer files, numbered 00-44, with their syntactic category.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def lexnames_text() -> str:
    return "".join(
        f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def _cache_dir() -> Path:
    base = os.environ.get("HAFCLS_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base) / "hafcls" if base else Path.home() / ".cache" / "hafcls"


def _system_wordnet_dir() -> Path | None:
    candidates = [os.environ["WNSEARCHDIR"]] if os.environ.get("WNSEARCHDIR") else []
    candidates += list(_SYSTEM_DIRS)
    for c in candidates:
        if (Path(c) / "data.noun").is_file() and (Path(c) / "index.noun").is_file():
            return Path(c)
    return None


def prepare_system_wordnet(src: Path, dest_root: Path | None = None) -> Path:
    """Copy a system WordNet dict folder into ``<dest_root>/corpora/wordnet`` with ``lexnames``.

    Returns ``dest_root`` (the folder to put on ``nltk.data.path``). Copies rather than links,
    with mode 0644, because nltk refuses group/world-writable files.
    """
    dest_root = dest_root or _cache_dir() / "nltk_data"
    dest = dest_root / "corpora" / "wordnet"
    if (dest / "lexnames").is_file() and (dest / "data.noun").is_file():
        return dest_root
    tmp = dest.with_name(f".wordnet.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            shutil.copyfile(f, tmp / f.name)
    if not (tmp / "lexnames").exists():
        (tmp / "lexnames").write_text(lexnames_text())
    for f in tmp.iterdir():
        f.chmod(0o644)
    tmp.chmod(0o755)
    if dest.exists():  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    return dest_root


def load_wordnet():
    """The nltk WordNet corpus reader, found or prepared as described in the module doc."""
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    try:
        nltk.data.find("corpora/wordnet")
        from nltk.corpus import wordnet as wn

        wn.ensure_loaded()
        return wn
    except LookupError:
        pass
    src = _system_wordnet_dir()
    if src is None:
        raise HafclsError("WordNet was not found by nltk or in the system folders.", _INSTALL_HINT)
    root = prepare_system_wordnet(src)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    with warnings.catch_warnings():  # "multilingual functions not available": no OMW, by design
        warnings.simplefilter("ignore", UserWarning)
        return WordNetCorpusReader(nltk.data.find("corpora/wordnet"), None)


def _synset(wn, wnid: str):
    if not _WNID.match(wnid):
        raise HafclsError(
            f"{wnid!r} is not a WordNet noun id.",
            "use ImageNet-style ids: 'n' followed by 8 digits, e.g. n01440764.",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            synset = wn.synset_from_pos_and_offset("n", int(wnid[1:]))
    except Exception:  # older nltk raises (several types) for a bad offset, newer returns None
        synset = None
    if synset is None:
        raise HafclsError(
            f"{wnid!r} is not a synset in this WordNet.",
            "check the id against WordNet 3.0 (the version ImageNet uses).",
        )
    return synset


def _hypernym_offsets_in_file_order(wn, synset) -> list[int]:
    """Offsets of a noun synset's hypernym pointers in the order the data file lists them.

    A data line reads ``offset lex ss_type w_cnt (word lex_id)*w_cnt p_cnt
    (symbol offset pos src/tgt)*p_cnt ...`` with counts w_cnt in hex and p_cnt in decimal.
    """
    f = wn._data_file("n")
    f.seek(synset.offset())
    line = f.readline()
    fields = (line.decode("utf-8") if isinstance(line, bytes) else line).split()
    w_cnt = int(fields[3], 16)
    i = 4 + 2 * w_cnt
    p_cnt = int(fields[i])
    ptrs = fields[i + 1 : i + 1 + 4 * p_cnt]
    return [int(ptrs[j + 1]) for j in range(0, len(ptrs), 4)
            if ptrs[j] in ("@", "@i") and ptrs[j + 2] == "n"]


def wnid_of(synset) -> str:
    return f"n{synset.offset():08d}"


def wordnet(
    wnids: Sequence[str],
    rule: str = "shortest",
    prune_chains: bool = False,
    name: str | None = None,
) -> Hierarchy:
    """Build a label tree over WordNet noun synsets given as ImageNet ids.

    Classes keep the order of ``wnids``. A class may be an ancestor of another class; it then
    sits at an internal node. Node ids are wnids; names are the first lemma of each synset.
    """
    if rule not in RULES:
        raise HafclsError(f"Unknown DAG-to-tree rule {rule!r}.", f"use one of {RULES}.")
    wnids = [str(w).strip() for w in wnids]
    if not wnids:
        raise HafclsError("No WordNet ids were given.", "pass a list such as ['n01440764'].")
    wn = load_wordnet()

    def parent_of(s):
        if rule == "first":
            offsets = _hypernym_offsets_in_file_order(wn, s)
            return wn.synset_from_pos_and_offset("n", offsets[0]) if offsets else None
        hyper = s.hypernyms() + s.instance_hypernyms()
        return min(hyper, key=lambda p: (p.min_depth(), p.name())) if hyper else None

    edges: dict[str, str] = {}
    names: dict[str, str] = {}
    for wnid in wnids:
        s = _synset(wn, wnid)
        names.setdefault(wnid, s.lemmas()[0].name().replace("_", " "))
        while True:
            p = parent_of(s)
            child = wnid_of(s)
            if p is None or child in edges:
                break
            edges[child] = wnid_of(p)
            names.setdefault(edges[child], p.lemmas()[0].name().replace("_", " "))
            s = p
    meta = {
        "source": "wordnet",
        "wordnet_version": getattr(wn, "get_version", lambda: "3.0")(),
        "rule": rule,
        "prune_chains": prune_chains,
    }
    if name:
        meta["name"] = name
    h = Hierarchy.from_edges([(p, c) for c, p in edges.items()], wnids, names=names, meta=meta)
    return prune_unary_chains(h) if prune_chains else h


def prune_unary_chains(h: Hierarchy) -> Hierarchy:
    """Remove internal non-class nodes with exactly one child (the root is kept)."""
    g = h.graph.copy()
    classes = set(h.classes)
    for node in list(g.nodes):
        if node == h.root or node in classes or g.out_degree(node) != 1:
            continue
        (parent,) = g.predecessors(node)
        (child,) = g.successors(node)
        g.remove_node(node)
        g.add_edge(parent, child)
    meta = {**h.meta, "prune_chains": True}
    return Hierarchy(g, h.classes, names=h.names, meta=meta)
