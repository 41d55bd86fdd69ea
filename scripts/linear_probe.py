"""Linear probe: embeddings from a timm backbone, then hafcls heads fitted with scikit-learn.

1. Images of Fashion-MNIST (the IDX files, e.g. Debian's /usr/share/datasets/fashion-mnist) or of
   hafcls's synthetic tree dataset go through a frozen timm backbone (random weights by default,
   nothing downloaded; ``--weights FILE`` loads a local .safetensors/.pth of the same model) and
   its pooled features are kept.
2. ``StandardScaler -> HierarchyAwareClassifier`` is fitted on the same embeddings once per method
   (CE and HAFrame by default) and scored on the test embeddings: top-1, mistake severity,
   HierDist@5, and hF1 / hedged accuracy of ``predict_node``.

    python scripts/linear_probe.py            # Fashion-MNIST, resnet10t, CE and HAFrame heads
    python scripts/linear_probe.py --dataset synthetic --methods ce haframe hxe
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hafcls.errors import HafclsError


def fashion_mnist_images(train_per_class: int, test_per_class: int):
    """``(images uint8 N x 1 x 28 x 28, class ids)`` of the train and test splits, the first
    ``n`` images of each class in file order."""
    from hafcls.data.fashion_mnist import (
        CLASSES,
        first_per_class,
        locate_fashion_mnist,
        read_split_files,
    )
    from hafcls.hierarchy import load

    files = locate_fashion_mnist()
    out = []
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        images, labels = read_split_files(*files[split])
        keep = first_per_class(labels, n)
        out.append((images[torch.from_numpy(keep)], np.asarray(CLASSES)[labels[keep]]))
    stats = ((0.2860,) * 3, (0.3530,) * 3)
    return load("fashion-mnist"), out, stats


def synthetic_images(train_per_class: int, test_per_class: int, image_size: int):
    from hafcls.data.synthetic import (
        SYNTHETIC_MEAN,
        SYNTHETIC_STD,
        SyntheticHierarchyDataset,
        synthetic_hierarchy,
    )

    h = synthetic_hierarchy()
    out = []
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        ds = SyntheticHierarchyDataset(h, split, per_class=n, image_size=image_size)
        arrays = [ds.generate(i) for i in range(len(ds))]  # generation is per sample
        images = torch.from_numpy(np.stack([a for a, _ in arrays])).permute(0, 3, 1, 2)
        out.append((images, np.asarray(h.classes)[[c for _, c in arrays]]))
    return h, out, (SYNTHETIC_MEAN, SYNTHETIC_STD)


@torch.no_grad()
def embed(backbone, images: torch.Tensor, size: int, stats, batch: int = 500) -> np.ndarray:
    """Pooled features of uint8 images (grey images replicated to RGB, resized to ``size``)."""
    mean = torch.tensor(stats[0]).view(1, 3, 1, 1)
    std = torch.tensor(stats[1]).view(1, 3, 1, 1)
    out = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch].float().div_(255)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = (x - mean) / std
        out.append(backbone.forward_head(backbone.forward_features(x), pre_logits=True))
    return torch.cat(out).numpy()


@torch.no_grad()
def calibrate_batch_norm(backbone, images: torch.Tensor, size: int, stats) -> None:
    """Running statistics of every batch-norm layer from the training images (labels unused).

    A randomly initialised network's statistics (mean 0, variance 1) do not match its
    activations, which grow or vanish layer after layer; with the data's own statistics its
    random features are far more informative. ``momentum=None`` makes the running values the
    exact average over all batches.
    """
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    backbone.train()
    embed(backbone, images, size, stats)
    backbone.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("fashion-mnist", "synthetic"), default="fashion-mnist")
    p.add_argument("--model", default="resnet10t", help="timm model name")
    p.add_argument("--weights", default=None, help="local weights file of the timm model")
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--train-per-class", type=int, default=1000)
    p.add_argument("--test-per-class", type=int, default=200)
    p.add_argument("--methods", nargs="+", default=["ce", "haframe"])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threshold", type=float, default=0.8, help="predict_node threshold")
    p.add_argument("--no-bn-calibration", action="store_true",
                   help="keep the backbone's batch-norm statistics (default for --weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args(argv)

    from hafcls.metrics import evaluate
    from hafcls.metrics.labels import class_indices, evaluate_labels
    from hafcls.models import create_backbone
    from hafcls.sklearn import HierarchyAwareClassifier

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the random backbone's weights
    t0 = time.time()
    if args.dataset == "fashion-mnist":
        h, splits, stats = fashion_mnist_images(args.train_per_class, args.test_per_class)
    else:
        h, splits, stats = synthetic_images(args.train_per_class, args.test_per_class,
                                            args.img_size)
    backbone = create_backbone(args.model, pretrained_file=args.weights).eval()
    calibrate = args.weights is None and not args.no_bn_calibration
    if calibrate:
        calibrate_batch_norm(backbone, splits[0][0], args.img_size, stats)
    (x_train, y_train), (x_test, y_test) = (
        (embed(backbone, images, args.img_size, stats), labels) for images, labels in splits)
    weights = args.weights or "random weights" + (", batch-norm statistics from the training "
                                                  "images" if calibrate else "")
    print(f"{args.dataset}: {len(y_train)} train / {len(y_test)} test images -> "
          f"{args.model} ({weights}) embeddings of width {x_train.shape[1]} "
          f"in {time.time() - t0:.0f} s")

    print(f"{'method':<12} {'top-1':>7} {'severity':>9} {'HierDist@5':>11} "
          f"{'hF1@' + str(args.threshold):>8} {'hedged acc':>11} {'fit s':>6}")
    targets = class_indices(y_test, h)
    for method in args.methods:
        clf = HierarchyAwareClassifier(h, method=method, max_epochs=args.epochs,
                                       batch_size=args.batch_size, lr=args.lr,
                                       random_state=args.seed)
        pipe = make_pipeline(StandardScaler(), clf)
        t = time.time()
        pipe.fit(x_train, y_train)
        fit_s = time.time() - t
        scores = np.full((len(y_test), h.num_classes), -1.0)  # classes without data last
        scores[:, class_indices(clf.classes_, h)] = pipe.predict_proba(x_test)
        ranked = evaluate(scores, targets, h, ks=(5,))
        nodes = clf.predict_node(pipe[:-1].transform(x_test), args.threshold)
        hedged = evaluate_labels(y_test, nodes, h)
        print(f"{method:<12} {100 * ranked['top1']:7.2f} {ranked['mistake_severity']:9.3f} "
              f"{ranked['hierdist@5']:11.3f} {hedged['hF_micro']:8.3f} "
              f"{100 * hedged['node_accuracy']:10.2f}% {fit_s:6.1f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HafclsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
