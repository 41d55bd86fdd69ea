"""The dataset modules, in the order ``--data`` and ``hafcls.list_datasets()`` list them.

Each module registers itself on import (``@register_dataset``); adding a dataset is a new module
in ``hafcls/data/`` plus one entry in ``MODULES``. The default dataset (synthetic) comes first.
"""

import importlib

MODULES = ("synthetic", "cifar100", "fgvc_aircraft", "inaturalist", "tiered_imagenet",
           "fashion_mnist", "folder")

for _name in MODULES:
    importlib.import_module(f"hafcls.data.{_name}")
