"""Reliability probe (issue 15): inputs a new user gives, across the CLI and the library.

Each case expects either exit code 2 with a message naming the problem (a substring checked),
or the right result (a check of the output or the files). Network access is cut for the run
(DNS lookups fail, the Hugging Face hub is offline), so nothing is downloaded. Prints a table
(case, expected, got, ok) and a summary; exit code 0 when every case holds.

    python scripts/probe_reliability.py [--keep DIR] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from hafcls.cli.main import cli

TINY = ["--data", "synthetic", "--method", "ce", "--model", "test_resnet", "--epochs", "1",
        "--batch-size", "8", "--image-size", "16", "--workers", "0", "--device", "cpu",
        "--no-progress", "--set", "data_options.per_class={train: 4, val: 2, test: 2}",
        "--set", "data_options.branching=[2, 2]", "--lr", "0.05"]


@dataclass
class Case:
    name: str
    expect: str                     # "exit 2: <regex>" or "ok: <what>"
    run: Callable[[], tuple[int, str]]
    check: Callable[[int, str], bool] | None = None


def invoke(*args, env=None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    out = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        out += f"\nTRACEBACK {type(result.exception).__name__}: {result.exception}"
        return 99, out
    return result.exit_code, out


def no_network() -> None:
    """Cut the network for this process: DNS fails, the hub is offline."""
    def refuse(*a, **k):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (probe)")

    socket.getaddrinfo = refuse
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hc

        hc.HF_HUB_OFFLINE = True
    except ImportError:
        pass


# ---------------------------------------------------------------------- fixtures
class World:
    def __init__(self, root: Path):
        self.root = root
        self.run = root / "run"
        code, out = invoke("train", *TINY, "-o", self.run)
        assert code == 0, out
        self.img = self._image("rgb.png", Image.new("RGB", (20, 20), (200, 40, 90)))
        self.g16 = self._image("g16.png", Image.fromarray(np.full((8, 8), 32896, np.uint16)))
        self.ftif = self._image("f.tif", Image.fromarray(np.zeros((4, 4), np.float32)))
        self.empty = root / "empty.png"
        self.empty.write_bytes(b"")
        self.folder, self.tree = self._folder_data()

    def _image(self, name, img):
        path = self.root / name
        img.save(path)
        return path

    def _folder_data(self):
        from hafcls.hierarchy import Hierarchy

        h = Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "a1"), ("a", "a2"),
                                  ("b", "b1"), ("b", "b2")])
        rng = np.random.default_rng(0)
        data = self.root / "folder"
        for split in ("train", "val", "test"):
            for c in h.classes:
                (data / split / c).mkdir(parents=True)
                for i in range(2):
                    Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(
                        data / split / c / f"{i}.png")
        h.to_json(self.root / "tree.json")
        return data, self.root / "tree.json"

    def path(self, name: str) -> Path:
        return self.root / name

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    def copy_run(self, name: str) -> Path:
        target = self.root / name
        shutil.copytree(self.run, target)
        return target

    def hierarchy_file(self, name: str, change) -> Path:
        from hafcls.hierarchy import Hierarchy

        data = Hierarchy.from_edges([("r", "a"), ("r", "b")]).to_dict()
        data.pop("fingerprint")
        change(data)
        return self.write(name, json.dumps(data))


def holder(folder: Path) -> subprocess.Popen:
    code = ("import time; from hafcls.engine.runs import RunFolder; "
            f"f = RunFolder({str(folder)!r}); f.lock(); print('locked', flush=True); "
            "time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()
    return proc


def library(fn) -> Callable[[], tuple[int, str]]:
    """A library call: 0 and its result, or 2 and a HafclsError's text, or 99 (traceback)."""
    from hafcls.errors import HafclsError

    def run():
        try:
            return 0, str(fn())
        except HafclsError as err:
            return 2, f"Error: {err}"
        except Exception as err:  # noqa: BLE001 -- the probe reports it as a failure
            return 99, f"TRACEBACK {type(err).__name__}: {err}"
    return run


# ---------------------------------------------------------------------- cases
def cases(w: World) -> list[Case]:
    out: list[Case] = []

    def err(name, pattern, run):
        out.append(Case(name, f"exit 2: {pattern}", run))

    def ok(name, what, run, check=None):
        out.append(Case(name, f"ok: {what}", run, check))

    def train(*extra, name=None):
        return lambda: invoke("train", *TINY, *extra, "-o", w.path(name or "t-" + str(
            abs(hash(extra)))))

    # 2. options, checked before anything is written
    err("alpha=0,5", "alpha.*must be a number",
        train("--method", "haframe", "--set", "method_options.alpha=0,5"))
    err("label_smoothing=0,5", "label_smoothing.*must be a number",
        train("--set", "method_options.label_smoothing=0,5"))
    err("haframe alpha out of range", "alpha.*in \\[0, 1\\]",
        train("--method", "haframe", "--set", "method_options.alpha=1.5"))
    err("haframe gamma negative", "gamma", train("--method", "haframe",
                                                 "--set", "method_options.gamma=-1"))
    err("method option unknown", "has no option 'nope'", train("--set", "method_options.nope=1"))
    err("model drop_rate not a number", "drop_rate.*must be a number",
        train("--set", "model_options.drop_rate=abc"))
    err("model drop_rate 1.5", "drop_rate.*\\[0, 1\\)",
        train("--set", "model_options.drop_rate=1.5"))
    err("model in_chans 0", "in_chans", train("--set", "model_options.in_chans=0"))
    ok("per_class without spaces", "8 train images",
       train("--set", "data_options.per_class={train:2,val:1,test:1}"),
       lambda c, o: c == 0 and "8 train images" in o)
    err("per_class misspelt split", "per_class has the key 'trian'",
        train("--set", "data_options.per_class={trian: 2}"))
    err("per_class zero", "per_class.train", train("--set", "data_options.per_class={train: 0}"))
    err("data option unknown", "Unknown data_options.*bogus",
        train("--set", "data_options.bogus=1"))
    err("data option wrong type", "noise.*number", train("--set", "data_options.noise=loud"))
    err("select-metric top7", "top7.*validation does not report", train("--select-metric", "top7"))
    err("select-metric acc@depth9", "acc@depth1 .. acc@depth2",
        train("--select-metric", "acc@depth9"))
    ok("select-metric hierdist@5", "trains", train("--select-metric", "hierdist@5"),
       lambda c, o: c == 0)
    err("batch-size 0", "batch_size", train("--batch-size", "0"))
    err("epochs 0", "epochs", train("--epochs", "0"))
    err("lr negative", "lr.*> 0", train("--lr", "-1"))
    err("lr nan", "lr", train("--lr", "nan"))
    err("momentum 1.5", "momentum", train("--momentum", "1.5"))
    err("warmup >= epochs", "warmup_epochs", train("--warmup-epochs", "3"))
    err("unknown --set key", "Unknown option 'epoch'", train("--set", "epoch=3"))
    err("--set without =", "KEY=VALUE", train("--set", "epochs"))
    err("unknown method", "Unknown method 'nope'", train("--method", "nope"))
    err("amp fp16 on cpu", "CUDA", train("--amp", "fp16"))
    # 3. environment
    err("pretrained offline", "pretrained weights of resnet18.*no network",
        train("--model", "resnet18", "--pretrained"))
    err("download offline", "Downloading the cifar100 dataset failed: no network",
        lambda: invoke("train", "--data", "cifar100", "--data-dir", w.path("cifar"),
                       "--download", "--method", "ce", "--model", "test_resnet",
                       "-o", w.path("dl")))
    err("read-only output", "No permission|Cannot write", train(name="/sys/hafcls-probe"))
    err("output is a file", "is a file",
        lambda: invoke("train", *TINY, "-o", w.write("afile.txt", "x")))
    err("output holds other files", "holds other files",
        lambda: (w.path("other").mkdir(exist_ok=True), w.write("other/notes.txt", "mine"),
                 invoke("train", *TINY, "-o", w.path("other")))[-1])
    err("existing run without --resume", "--resume", lambda: invoke("train", *TINY, "-o", w.run))
    # 1. concurrent runs
    def concurrent():
        folder = w.path("locked")
        proc = holder(folder)
        try:
            code, text = invoke("train", *TINY, "-o", folder)
            return code, text + f" [holder pid {proc.pid}]"
        finally:
            proc.kill()
            proc.wait()
    out.append(Case("second writer refused", "exit 2: names the other pid", concurrent,
                    lambda c, o: c == 2 and re.search(r"pid (\d+).*\[holder pid \1\]", o,
                                                      re.S) is not None))

    def stale():
        folder = w.path("stale")
        proc = holder(folder)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return invoke("train", *TINY, "-o", folder)
    ok("stale lock after SIGKILL taken over", "trains", stale, lambda c, o: c == 0)
    # 5. inputs accepted silently
    err("duplicate YAML key", "sets 'lr' twice",
        lambda: invoke("train", "--config", w.write("dup.yaml", "lr: 0.1\nlr: 0.2\n"),
                       "-o", w.path("dup")))
    err("config not a mapping", "must hold a mapping",
        lambda: invoke("train", "--config", w.write("list.yaml", "- 1\n- 2\n"),
                       "-o", w.path("l")))
    err("config file missing", "No such config file",
        lambda: invoke("train", "--config", w.path("missing.yaml"), "-o", w.path("m")))

    def resume_lost_config(lr):
        def run():
            run_dir = w.copy_run(f"lost-{lr}")
            (run_dir / "config.json").unlink()
            extra = ("--lr", lr) if lr else ()
            return invoke("train", "-o", run_dir, "--resume", "--epochs", "2", "--no-progress",
                          *extra)
        return run
    err("resume, config.json lost, --lr changed", "Cannot resume with lr=0.2",
        resume_lost_config("0.2"))
    ok("resume, config.json lost, same options", "resumes", resume_lost_config(None),
       lambda c, o: c == 0)
    err("resume with changed method", "Cannot resume with method",
        lambda: invoke("train", "-o", w.copy_run("chg"), "--resume", "--method", "hxe"))
    err("hierarchy id is a number", "holds 1 \\(int\\).*JSON strings",
        lambda: invoke("hierarchy", "show", w.hierarchy_file(
            "int.json", lambda d: d["classes"].__setitem__(0, 1))))
    err("hierarchy edge is null", "holds None",
        lambda: invoke("hierarchy", "show", w.hierarchy_file(
            "null.json", lambda d: d["edges"][0].__setitem__(1, None))))
    err("hierarchy from a future version", "format version 7.*up to version 1",
        lambda: invoke("hierarchy", "show", w.hierarchy_file(
            "v7.json", lambda d: d.update(version=7))))
    err("hierarchy name is a number", "names must be JSON strings",
        lambda: invoke("hierarchy", "show", w.hierarchy_file(
            "nm.json", lambda d: d.update(names={"a": 5}))))
    err("hierarchy cycle", "cycle",
        lambda: invoke("hierarchy", "show", w.write("cyc.txt", "r a\na b\nb a\n")))
    err("hierarchy two roots", "2 roots", lambda: invoke("hierarchy", "show",
                                                         w.write("roots.txt", "r a\ns b\n")))
    err("hierarchy file missing", "neither a shipped hierarchy nor",
        lambda: invoke("hierarchy", "show", w.path("nope.json")))
    ok("16-bit image converted by range", "grey 128",
       library(lambda: np.asarray(__import__("hafcls.data", fromlist=["x"]).load_rgb(w.g16))
               [0, 0].tolist()), lambda c, o: c == 0 and o == "[128, 128, 128]")

    def transparent():
        from hafcls.data import load_rgb

        Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(w.path("t.png"))
        return np.asarray(load_rgb(w.path("t.png")))[0, 0].tolist()
    ok("transparent pixels over white", "[255, 255, 255]", library(transparent),
       lambda c, o: c == 0 and o == "[255, 255, 255]")
    err("float image refused", "pixel mode 'F'", library(
        lambda: __import__("hafcls.data", fromlist=["x"]).load_rgb(w.ftif)))
    # 6. memory
    def summary_without_kxk():
        from hafcls.hierarchy import Hierarchy, load

        h = load("cifar100")
        d = h.distance_matrix()
        iu = np.triu_indices(h.num_classes, 1)
        expected = np.bincount(d[iu].astype(np.int64))
        original = Hierarchy.distance_matrix
        Hierarchy.distance_matrix = None  # any use fails
        try:
            text = h.summary()
        finally:
            Hierarchy.distance_matrix = original
        return all(f"  {v:5d}  {c}" in text for v, c in enumerate(expected) if c)
    ok("summary histogram without K x K", "True", library(summary_without_kxk),
       lambda c, o: c == 0 and o == "True")

    def streaming():
        from hafcls.data import images as I
        from hafcls.engine.predict import iter_predictions

        seen, original = [], I.load_rgb
        I.load_rgb = lambda p: seen.append(p) or original(p)
        try:
            next(iter_predictions(w.run, [w.img] * 6, batch_size=2, device="cpu"))
        finally:
            I.load_rgb = original
        return len(seen)
    ok("predict decodes one batch before the first result", "2", library(streaming),
       lambda c, o: c == 0 and o == "2")
    # 7. messages
    def home_paths():
        env = {"HOME": str(w.root)}
        code, text = invoke("train", *TINY, "-o", "~/tilde-run", env=env)
        return code, text + f" [exists: {(w.root / 'tilde-run' / 'config.json').exists()}]"
    ok("~ in --output expanded", "run under $HOME", home_paths,
       lambda c, o: c == 0 and "[exists: True]" in o)

    def exponent_lr():
        path = w.write("exp.yaml", "lr: 1e-3\n")
        code, text = invoke("train", *TINY[:-2], "--config", path, "-o", w.path("exp"))
        lr = json.loads((w.path("exp") / "config.json").read_text())["lr"] if code == 0 else None
        return code, f"{text} [lr={lr}]"
    ok("lr: 1e-3 in YAML is a number", "lr=0.001", exponent_lr,
       lambda c, o: c == 0 and "[lr=0.001]" in o)
    err("is-a header line", "looks like a header",
        lambda: invoke("hierarchy", "show", w.write("hdr.txt", "parent child\nr a\nr b\n")))
    err("is-a with commas", "separated by ','",
        lambda: invoke("hierarchy", "show", w.write("csv.txt", "r,a\nr,b\n")))

    def diverged_message():
        from hafcls.engine.runs import RunFolder, stop_message

        kept, fix = stop_message(RunFolder(w.path("never")), "bf16")
        return f"{kept} | {fix}"
    ok("diverged bf16 run: no phantom last.pt, no bf16 advice", "no checkpoint; --amp none",
       library(diverged_message),
       lambda c, o: c == 0 and "no checkpoint" in o and "bf16" not in o and "--amp none" in o)

    def only_test():
        run_dir = w.path("folder-run")
        code, text = invoke("train", "--data", "folder", "--data-dir", w.folder, "--hierarchy",
                            w.tree, "--method", "ce", "--model", "test_resnet", "--epochs", "1",
                            "--batch-size", "4", "--image-size", "16", "--workers", "0",
                            "--device", "cpu", "--no-progress", "-o", run_dir)
        if code:
            return code, text
        copy = w.path("test-only")
        shutil.copytree(w.folder / "test", copy / "test")
        return invoke("evaluate", run_dir, "--data-dir", copy, "--device", "cpu")
    ok("evaluate on a copy holding only test/", "metrics", only_test, lambda c, o: c == 0)
    err("train on a copy holding only test/", "No 'train' folder",
        lambda: invoke("train", "--data", "folder", "--data-dir", w.path("test-only"),
                       "--hierarchy", w.tree, "--method", "ce", "--model", "test_resnet",
                       "-o", w.path("to")))
    err("folder data dir missing", "No 'train' folder.*does not exist",
        lambda: invoke("train", "--data", "folder", "--data-dir", w.path("nowhere"),
                       "--hierarchy", w.tree, "--method", "ce", "--model", "test_resnet",
                       "-o", w.path("nw")))
    # 4. degenerate batches
    err("batch-size 1 with batch norm", "batch norm", train("--batch-size", "1"))

    def batch_of_one():
        data = w.path("one")
        shutil.copytree(w.folder, data)
        for i, f in enumerate(sorted((data / "train").rglob("*.png"))):
            if i < 7:
                f.write_bytes(b"")
        args = ["train", "--data", "folder", "--data-dir", data, "--hierarchy", w.tree,
                "--method", "ce", "--model", "test_resnet", "--batch-size", "4",
                "--image-size", "16", "--workers", "0", "--device", "cpu", "--no-progress",
                "-o", w.path("one-run")]
        code, text = invoke(*args, "--epochs", "1")
        if code:
            return code, text
        return invoke(*args, "--epochs", "2", "--resume")
    ok("batch of one left by unreadable images", "trains and resumes", batch_of_one,
       lambda c, o: c == 0)
    # predict with the new decoders (issue 14)
    def predict(*extra):
        return lambda: invoke("predict", w.run, w.img, "--device", "cpu", *extra)

    def decoded_ids(c, o):
        from hafcls.hierarchy import Hierarchy

        if c:
            return False
        nodes = set(Hierarchy.from_json(w.run / "hierarchy.json").nodes)
        entry = json.loads(o)[0]["decision"]
        ids = [entry["id"]] if "id" in entry else [n["id"] for n in entry["nodes"]]
        return bool(ids) and set(ids) <= nodes
    ok("predict --decode node", "a node id", predict("--decode", "node", "--json"), decoded_ids)
    ok("predict --decode hfbeta", "node ids", predict("--decode", "hfbeta", "--json"),
       decoded_ids)
    ok("predict --decode crm", "ranked", predict("--decode", "crm"),
       lambda c, o: c == 0 and "rank" in o)
    err("predict --decode bogus", "Invalid value for '--decode'", predict("--decode", "bogus"))
    err("predict --beta 0", "beta must be", predict("--decode", "hfbeta", "--beta", "0"))
    err("predict --crm with --decode node", "two different rankings",
        predict("--crm", "--decode", "node"))
    err("predict --top-k 0", "top-k", predict("--top-k", "0"))
    err("predict --hedge 1.5", "hedge", predict("--hedge", "1.5"))
    err("predict --batch-size 0", "batch_size", predict("--batch-size", "0"))
    err("predict an empty file", "is empty",
        lambda: invoke("predict", w.run, w.empty, "--device", "cpu"))
    ok("predict a 16-bit image", "prediction", lambda: invoke("predict", w.run, w.g16,
                                                              "--device", "cpu"),
       lambda c, o: c == 0 and "rank" in o)
    err("predict a float image", "pixel mode 'F'",
        lambda: invoke("predict", w.run, w.ftif, "--device", "cpu"))
    err("predict missing run", "No such run folder",
        lambda: invoke("predict", w.path("gone"), w.img))
    err("evaluate missing run", "No such run folder",
        lambda: invoke("evaluate", w.path("gone")))
    # 8. exact values
    def hedge_threshold():
        import torch

        from hafcls.hierarchy import Hierarchy
        from hafcls.inference import hedge

        h = Hierarchy.from_edges([("r", "a"), ("r", "b"), ("a", "x"), ("a", "y"), ("b", "z")])
        p = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64)
        return [h.nodes[int(hedge(p, h, t).node_index[0])] for t in (0.5, 0.8, 0.8 + 1e-9)]
    ok("hedge at exactly the threshold", "['x', 'a', 'r']", library(hedge_threshold),
       lambda c, o: o == "['x', 'a', 'r']")

    def haframe_loss():
        import math

        import torch

        from hafcls.losses import HAFrameLoss

        s = torch.tensor([[1.0, 0.2, -0.5], [0.2, 1.0, 0.1], [-0.5, 0.1, 1.0]])
        got = float(HAFrameLoss(similarity=s, alpha=0.3)(
            torch.tensor([[5.0, 0.0, 0.0]]), torch.tensor([[3.0, 4.0]]), torch.tensor([0])))
        want = 0.7 * math.log(1 + 2 * math.exp(-5)) + 0.3 * 0.29
        return abs(got - want) < 1e-6
    ok("HAFrame loss closed form (alpha 0.3)", "True", library(haframe_loss),
       lambda c, o: o == "True")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, help="keep the probe's files here")
    parser.add_argument("--only", help="run only cases whose name contains this")
    args = parser.parse_args(argv)
    no_network()
    root = args.keep or Path(tempfile.mkdtemp(prefix="hafcls-probe-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    world = World(root)
    rows, failed = [], 0
    for case in cases(world):
        if args.only and args.only not in case.name:
            continue
        code, text = case.run()
        if case.check is not None:
            good = bool(case.check(code, text))
        else:
            pattern = case.expect.split(": ", 1)[1]
            good = code == 2 and re.search(pattern, text, re.S) is not None \
                and "Traceback" not in text
        got = f"exit {code}: " + " ".join(text.strip().splitlines()[-1:])[:90]
        rows.append((case.name, case.expect[:44], got, "ok" if good else "FAIL"))
        failed += not good
    widths = [max(len(r[i]) for r in rows + [("case", "expected", "got", "ok")])
              for i in range(4)]
    for row in [("case", "expected", "got", "ok"), *rows]:
        print("  ".join(str(v).ljust(wd) for v, wd in zip(row, widths)).rstrip())
    print(f"\n{len(rows)} cases: {len(rows) - failed} ok, {failed} failed "
          f"({time.perf_counter() - started:.0f} s)")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
