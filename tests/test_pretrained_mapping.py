"""Local backbone weights: a MoCo-v2 checkpoint (PASS layout) and torchvision's ResNet files."""

import logging

import pytest
import timm
import torch
import torchvision
from torch import nn

from hafcls.errors import HafclsError
from hafcls.models.backbone import create_backbone
from hafcls.models.pretrained import load_moco_checkpoint, map_moco


def moco_checkpoint(path, arch="resnet18", seed=0):
    """A checkpoint in the MoCo-v2 training script's layout: the MoCo model (query encoder with an
    MLP projection head, key encoder, queue) wrapped in DistributedDataParallel (``module.``)."""
    torch.manual_seed(seed)

    def encoder():
        net = getattr(torchvision.models, arch)(num_classes=128)
        net.fc = nn.Sequential(nn.Linear(net.fc.in_features, 2048), nn.ReLU(), nn.Linear(2048, 128))
        for m in net.modules():  # non-trivial BN statistics, so that they are checked too
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
                m.weight.data.normal_()
        return net

    q, k = encoder(), encoder()
    state = {f"module.encoder_q.{n}": t for n, t in q.state_dict().items()}
    state.update({f"module.encoder_k.{n}": t for n, t in k.state_dict().items()})
    state["module.queue"] = torch.randn(128, 64)
    state["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    opt = torch.optim.SGD(q.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    torch.save({"epoch": 800, "arch": arch, "state_dict": state,
                "optimizer": opt.state_dict()}, path)
    return q


@pytest.fixture(scope="module")
def moco(tmp_path_factory):
    """(path, query encoder) of one MoCo-v2 checkpoint shared by the tests below."""
    path = tmp_path_factory.mktemp("moco") / "moco_v2_800ep.pth.tar"
    return path, moco_checkpoint(path)


def test_moco_checkpoint_lands_in_timm_resnet(moco, caplog):
    path, q = moco
    with caplog.at_level(logging.INFO, logger="hafcls.models.pretrained"):
        model = create_backbone("resnet18", pretrained_file=path)
    want = {n: t for n, t in q.state_dict().items() if not n.startswith("fc.")}
    got = model.state_dict()
    assert set(got) == set(want)  # timm's names are torchvision's; no classifier (num_classes=0)
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, msg=name)
    report = model.hafcls_weights_report
    assert report.missing == [] and report.unexpected == [] and len(report.loaded) == len(want)
    assert {"module.encoder_q.fc.0.weight", "module.encoder_q.fc.2.bias", "module.queue",
            "module.queue_ptr", "module.encoder_k.conv1.weight"} <= set(report.dropped)
    assert "tensors loaded" in caplog.text
    # the loaded backbone computes what the query encoder computes (minus the projection)
    x = torch.randn(2, 3, 64, 64)
    q_trunk = nn.Sequential(*list(q.children())[:-1], nn.Flatten())  # without the projection
    torch.testing.assert_close(model.eval()(x), q_trunk.eval()(x))


def test_moco_missing_and_unexpected_reported(moco, caplog):
    path = moco[0]
    with caplog.at_level(logging.WARNING, logger="hafcls.models.pretrained"):
        model = create_backbone("resnet34", pretrained_file=path)  # 3 blocks in layer1, not 2
    report = model.hafcls_weights_report
    assert "layer1.2.conv1.weight" in report.missing and report.unexpected == []
    assert "missing in the file" in caplog.text
    mapped, dropped = map_moco({"encoder_q.conv1.weight": torch.ones(1), "encoder_q.fc.weight":
                                torch.ones(1), "encoder_k.conv1.weight": torch.ones(1)})
    assert list(mapped) == ["conv1.weight"] and len(dropped) == 2  # no 'module.' (single GPU)


def test_moco_errors(moco, tmp_path):
    path = moco[0]
    with pytest.raises(HafclsError, match="No tensor of"):
        load_moco_checkpoint(nn.Linear(3, 3), path)
    with pytest.raises(HafclsError, match="wrong shape"):
        create_backbone("resnet50", pretrained_file=path)  # bottleneck blocks
    plain = tmp_path / "plain.pth"
    torch.save(timm.create_model("resnet18").state_dict(), plain)
    with pytest.raises(HafclsError, match="no MoCo query encoder"):
        load_moco_checkpoint(timm.create_model("resnet18"), plain)


def test_torchvision_weights_as_tv_in1k(tmp_path):
    torch.manual_seed(1)
    tv = torchvision.models.resnet18()  # torchvision's own file layout, with its 1000-way fc
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(tv.state_dict(), path)
    model = create_backbone("resnet18.tv_in1k", pretrained_file=path)
    assert model.pretrained_cfg["tag"] == "tv_in1k"
    assert model.pretrained_cfg["mean"] == (0.485, 0.456, 0.406)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, tv.state_dict()[name], rtol=0, atol=0, msg=name)
    assert timm.is_model("resnet50.tv_in1k")
