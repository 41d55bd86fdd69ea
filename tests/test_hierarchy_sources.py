"""Hierarchy loaders on tiny fixtures written here in each source's exact upstream format."""

import json
import pickle

import numpy as np
import pytest

from hafcls.errors import HafclsError
from hafcls.hierarchy import (
    cifar100,
    fgvc_aircraft,
    from_nltk_tree_pickle,
    inaturalist,
    prune_unary_chains,
    wordnet,
)

# ----------------------------------------------------------------------------- CIFAR-100


def write_cifar_pickles(root, fine_names, coarse_names, fine, coarse):
    """Official layout: python-2 pickles (protocol 2) of dicts with bytes keys."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    meta = {b"fine_label_names": [n.encode() for n in fine_names],
            b"coarse_label_names": [n.encode() for n in coarse_names]}
    n = len(fine)
    train = {b"filenames": [f"img_{i}.png".encode() for i in range(n)],
             b"batch_label": b"training batch 1 of 1",
             b"fine_labels": list(fine), b"coarse_labels": list(coarse),
             b"data": np.zeros((n, 3072), dtype=np.uint8)}
    for name, obj in (("meta", meta), ("train", train), ("test", train)):
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
    return folder


def test_cifar100_tree(tmp_path):
    fine_names = ["apple", "bear", "bus", "pear"]
    coarse_names = ["fruit", "large_carnivores", "vehicles_1"]
    fine = [0, 1, 2, 3, 0, 3]
    coarse = [0, 1, 2, 0, 0, 0]
    write_cifar_pickles(tmp_path, fine_names, coarse_names, fine, coarse)
    h = cifar100(tmp_path, levels=2)  # the files' own superclasses (levels=5 is the default)
    assert h.classes == fine_names  # torchvision's fine-label order
    assert h.height == 2 and h.parent("pear") == "superclass:fruit"
    assert h.name("superclass:large_carnivores") == "large carnivores"
    d = h.distance_matrix()
    assert d[0, 3] == 1 and d[0, 1] == 2


def test_cifar100_contradiction_and_missing(tmp_path):
    write_cifar_pickles(tmp_path, ["a", "b"], ["x", "y"], [0, 0, 1], [0, 1, 1])
    with pytest.raises(HafclsError, match="several superclasses"):
        cifar100(tmp_path)
    with pytest.raises(HafclsError, match="No CIFAR-100 data"):
        cifar100(tmp_path / "nowhere")


def test_cifar100_restricted_unpickler_refuses_code(tmp_path):
    folder = write_cifar_pickles(tmp_path, ["a"], ["x"], [0], [0])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "meta").write_bytes(pickle.dumps({b"fine_label_names": Evil()}, protocol=2))
    with pytest.raises(HafclsError, match="not a valid CIFAR-100 pickle"):
        cifar100(tmp_path)


# ----------------------------------------------------------------------------- FGVC-Aircraft

AIRCRAFT = {  # variant: (family, manufacturer) -- names with spaces as in the real files
    "707-320": ("Boeing 707", "Boeing"),
    "727-200": ("Boeing 727", "Boeing"),
    "737-200": ("Boeing 737", "Boeing"),
    "737-300": ("Boeing 737", "Boeing"),
    "Cessna 172": ("Cessna 172", "Cessna"),
    "DHC-1": ("DHC-1", "de Havilland"),
}


def write_fgvc(root, table=AIRCRAFT, splits=("train", "val", "test")):
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(table) + "\n")
    (data / "families.txt").write_text("\n".join(sorted({f for f, _ in table.values()})) + "\n")
    (data / "manufacturers.txt").write_text(
        "\n".join(sorted({m for _, m in table.values()})) + "\n")
    for s, split in enumerate(splits):
        rows = [(f"{1000000 + 100 * s + i:07d}", v) for i, v in enumerate(table)]
        for level, pick in (("variant", lambda v: v), ("family", lambda v: table[v][0]),
                            ("manufacturer", lambda v: table[v][1])):
            lines = [f"{img} {pick(v)}" for img, v in rows]
            (data / f"images_{level}_{split}.txt").write_text("\n".join(lines) + "\n")
    return data


def test_fgvc_aircraft_tree(tmp_path):
    write_fgvc(tmp_path)
    h = fgvc_aircraft(tmp_path)
    assert h.classes == list(AIRCRAFT)  # variants.txt order
    assert h.height == 3
    assert h.path("737-300") == ["aircraft", "manufacturer:Boeing", "family:Boeing 737", "737-300"]
    # a family may share its name with a variant: ids differ, names do not
    assert h.parent("Cessna 172") == "family:Cessna 172"
    assert h.name("family:Cessna 172") == "Cessna 172"
    d = h.distance_matrix()
    i = h.class_index
    assert d[i("737-200"), i("737-300")] == 1
    assert d[i("707-320"), i("737-300")] == 2
    assert d[i("707-320"), i("DHC-1")] == 3


def test_fgvc_accepts_data_folder_and_rejects_contradictions(tmp_path):
    data = write_fgvc(tmp_path)
    assert fgvc_aircraft(data).num_classes == len(AIRCRAFT)
    fam = data / "images_family_test.txt"
    lines = fam.read_text().splitlines()
    lines[0] = lines[0].split(" ")[0] + " Boeing 727"  # 707-320 now also under Boeing 727
    fam.write_text("\n".join(lines) + "\n")
    with pytest.raises(HafclsError, match="contradict a tree"):
        fgvc_aircraft(tmp_path)


def test_fgvc_missing_files(tmp_path):
    data = write_fgvc(tmp_path)
    (data / "images_manufacturer_val.txt").unlink()
    with pytest.raises(HafclsError, match="Missing FGVC-Aircraft file"):
        fgvc_aircraft(tmp_path)


# ----------------------------------------------------------------------------- iNaturalist

def inat_category(cid, genus, epithet, family="Pinaceae", order="Pinales", cls="Pinopsida",
                  phylum="Tracheophyta", kingdom="Plantae", **extra):
    return {"id": cid, "name": f"{genus} {epithet}", "kingdom": kingdom, "phylum": phylum,
            "class": cls, "order": order, "family": family, "genus": genus, **extra}


def test_inaturalist_2019_json(tmp_path):
    cats = [inat_category(2, "Pinus", "strobus"), inat_category(0, "Abies", "concolor"),
            inat_category(1, "Abies", "grandis"),
            inat_category(3, "Apis", "mellifera", family="Apidae", order="Hymenoptera",
                          cls="Insecta", phylum="Arthropoda", kingdom="Animalia")]
    path = tmp_path / "train2019.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": cats}))
    h = inaturalist(path)
    assert h.classes == ["0", "1", "2", "3"]  # category id order
    assert h.height == 7 and h.name("0") == "Abies concolor"
    d = h.distance_matrix()
    assert d[0, 1] == 1  # same genus
    assert d[0, 2] == 2  # same family
    assert d[0, 3] == 7  # different kingdoms
    assert h.name(h.path("3")[1]) == "Animalia"


def test_inaturalist_2021_schema_and_homonyms(tmp_path):
    cats = [inat_category(0, "Morus", "alba", family="Moraceae", order="Rosales",
                          cls="Magnoliopsida", specific_epithet="alba",
                          common_name="white mulberry"),
            inat_category(1, "Morus", "bassanus", family="Sulidae", order="Suliformes",
                          cls="Aves", phylum="Chordata", kingdom="Animalia",
                          specific_epithet="bassanus")]
    h = inaturalist(cats)
    assert h.name("0") == "Morus alba (white mulberry)"
    # the plant genus Morus and the bird genus Morus stay two different nodes
    assert h.parent("0") != h.parent("1")
    with pytest.raises(HafclsError, match="no 'genus'"):
        inaturalist([{k: v for k, v in cats[0].items() if k != "genus"}])


# ----------------------------------------------------------------------------- nltk pickle

def test_nltk_tree_pickle_needs_trust(tmp_path):
    from nltk import Tree

    tree = Tree("root", [Tree("A", ["a1", "a2"]), Tree("B", [Tree("C", ["c1"]), "b1"])])
    path = tmp_path / "tree.pkl"
    path.write_bytes(pickle.dumps(tree))
    with pytest.raises(HafclsError, match="arbitrary code"):
        from_nltk_tree_pickle(path)
    h = from_nltk_tree_pickle(path, trust=True)
    assert h.classes == ["a1", "a2", "c1", "b1"]  # tree order
    assert h.height == 3 and h.path("c1") == ["root", "B", "C", "c1"]


# ----------------------------------------------------------------------------- WordNet

def test_wordnet_imagenet_ids(wordnet_data):
    ids = ["n01440764", "n01443537", "n02085620", "n02085782"]  # tench, goldfish, 2 dogs
    h = wordnet(ids)
    assert h.classes == ids and h.root == "n00001740"
    assert h.name("n01440764") == "tench"
    d = h.distance_matrix()
    assert d[2, 3] < d[0, 2] and d[0, 1] < d[0, 2]
    assert h.meta["rule"] == "shortest"


def test_wordnet_class_at_internal_node_and_pruning(wordnet_data):
    ids = ["n02084071", "n02085620", "n02085782"]  # dog (an ancestor), Chihuahua, Japanese spaniel
    h = wordnet(ids)
    assert "n02084071" in h.ancestors("n02085620")
    assert h.distance_matrix()[1, 2] > 0
    p = prune_unary_chains(h)
    assert p.meta["prune_chains"] is True
    internal = [n for n in p.nodes if n not in p.classes and n != p.root]
    assert all(p.graph.out_degree(n) >= 2 for n in internal)
    assert p.num_nodes < h.num_nodes and p.height < h.height


def test_wordnet_bad_ids(wordnet_data):
    with pytest.raises(HafclsError, match="not a WordNet noun id"):
        wordnet(["dog"])
    with pytest.raises(HafclsError, match="not a synset"):
        wordnet(["n99999999"])


def test_wordnet_dag_rules(wordnet_data):
    # accordion (n02672831) has two hypernyms: the data file lists free-reed instrument first;
    # keyboard instrument is closer to the root. The choice must not depend on the process.
    first, shortest = wordnet(["n02672831"], rule="first"), wordnet(["n02672831"], rule="shortest")
    assert first.name(first.parent("n02672831")) == "free-reed instrument"
    assert shortest.name(shortest.parent("n02672831")) == "keyboard instrument"
    assert first.meta["rule"] == "first" and shortest.meta["rule"] == "shortest"
    with pytest.raises(HafclsError, match="Unknown DAG-to-tree rule"):
        wordnet(["n02672831"], rule="longest")
