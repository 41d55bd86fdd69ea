"""tieredImageNet-H (608 ImageNet classes under the WordNet tree) from a split listing.

The HAFrame, HAF and Hier-COS papers use making-better-mistakes' ``splits_tiered.zip``
(:func:`hafcls.data.split_listings.tiered_listing`): train 700 ILSVRC-2012 train images per
class, val and test 25 ILSVRC val images per class each (15,200 test images; a second listing
with 91,200 exists, and the summary printed when the data is built says which one is used).
Images are read from ``data_dir/<split>/<WordNet id>/<file name>``, where the papers'
preparation script copies them. The hierarchy is a hafcls hierarchy file of the tiered tree
(``--hierarchy``; convert the published nltk pickle once with ``hafcls hierarchy build
nltk-pickle tiered_imagenet_tree.pkl --trust -o tiered.json``).
"""

from __future__ import annotations

import os

from hafcls.data.base import resolve_hierarchy
from hafcls.data.registry import DatasetRequest, register_dataset
from hafcls.data.split_listings import datasets_from_listing, listing_info, tiered_listing
from hafcls.errors import HafclsError
from hafcls.validation import Option

LAYOUT = "data_dir/{train,val,test}/<WordNet id>/<image files>, as the split listing names them"
SPLITS_OPTION = Option("splits", (str, os.PathLike),
                       help="making-better-mistakes' split listing (zip archive or folder).")


@register_dataset("tiered-imagenet", image_size=224,
                  aliases=("tiered", "tiered-imagenet-h", "tieredimagenet-h"),
                  options=(SPLITS_OPTION,),
                  help="tieredImageNet-H (608 WordNet classes) from making-better-mistakes' "
                       "split listing (data option splits=PATH) and --hierarchy.")
def build_tiered(req: DatasetRequest):
    if req.download:
        raise HafclsError("tieredImageNet-H cannot be downloaded automatically.",
                          "prepare the ILSVRC-2012 images as the split listing names them.")
    root = req.need_dir("tiered-imagenet", LAYOUT)
    source = req.options.get("splits")
    if source is None:
        raise HafclsError("tieredImageNet-H needs its split listing.",
                          "pass --set data_options.splits=PATH/splits_tiered.zip.")
    if req.hierarchy is None:
        raise HafclsError("tieredImageNet-H needs its hierarchy (--hierarchy FILE).",
                          "convert the published tree once: hafcls hierarchy build nltk-pickle "
                          "tiered_imagenet_tree.pkl --trust -o tiered.json.")
    hierarchy = resolve_hierarchy(req.hierarchy)
    listing = tiered_listing(source, hierarchy)
    train, val, test = datasets_from_listing(listing, root, hierarchy, req, LAYOUT,
                                             bool(req.options.get("skip_corrupt", False)))
    return hierarchy, train, val, test, listing_info(listing, source)
