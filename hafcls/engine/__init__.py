"""Training, evaluation and prediction: the engine behind ``hafcls train|evaluate|predict``.

>>> from hafcls.engine import TrainConfig, train, evaluate_checkpoint    # doctest: +SKIP
>>> result = train(TrainConfig(data="synthetic", method="haframe", model="resnet10t",
...                            epochs=10, output="runs/demo"))           # doctest: +SKIP
>>> evaluate_checkpoint("runs/demo", crm=True)["hierdist@1"]              # doctest: +SKIP
"""

from hafcls.engine.checkpoint import check_hierarchy, load_checkpoint, save_checkpoint
from hafcls.engine.config import TrainConfig
from hafcls.engine.evaluate import evaluate_checkpoint, evaluate_model, metrics_table
from hafcls.engine.predict import predict_images
from hafcls.engine.runs import RunFolder, find_checkpoint
from hafcls.engine.train import train

__all__ = [
    "RunFolder",
    "TrainConfig",
    "check_hierarchy",
    "evaluate_checkpoint",
    "evaluate_model",
    "find_checkpoint",
    "load_checkpoint",
    "metrics_table",
    "predict_images",
    "save_checkpoint",
    "train",
]
