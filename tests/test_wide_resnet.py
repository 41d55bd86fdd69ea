"""WideResNet-28-8 registered with timm (the CIFAR-100 backbone of HAF/HAFrame)."""

import pytest
import timm
import torch
from torch import nn

import hafcls.models.wide_resnet  # noqa: F401  (registers the models with timm)
from hafcls.errors import HafclsError
from hafcls.models.wide_resnet import WideResNet


def wrn_param_count(depth: int, k: int, num_classes: int) -> int:
    """Closed form: stem, 3 groups of n pre-activation blocks (BN = 2 parameters per channel,
    3x3 convolutions without bias, 1x1 shortcuts where shapes change), final BN, linear."""
    n = (depth - 4) // 6
    total, c_in = 3 * 16 * 9, 16
    for w in (16 * k, 32 * k, 64 * k):
        for j in range(n):
            cin = c_in if j == 0 else w
            total += 2 * cin + 9 * cin * w + 2 * w + 9 * w * w
            total += cin * w if cin != w else 0
        c_in = w
    return total + 2 * c_in + c_in * num_classes + num_classes


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_hand_formula_and_published():
    m = timm.create_model("wide_resnet28_8")  # 100 classes by default (CIFAR-100)
    assert count(m) == wrn_param_count(28, 8, 100) == 23_401_012
    # WRN-28-10 is the WRN paper's "36.5M" CIFAR-100 model; same code, k = 10
    assert count(timm.create_model("wide_resnet28_10")) == wrn_param_count(28, 10, 100)
    assert round(wrn_param_count(28, 10, 100) / 1e6, 1) == 36.5


def test_structure_and_bn_momentum():
    m = timm.create_model("wide_resnet28_8", num_classes=0)
    bns = [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]
    assert bns and all(b.momentum == 0.001 for b in bns)
    assert m.stem.out_channels == 16 and m.stem.kernel_size == (3, 3)
    assert [len(s) for s in m.stages] == [4, 4, 4]
    assert [s[0].conv1.out_channels for s in m.stages] == [128, 256, 512]
    shortcuts = [b.shortcut for s in m.stages for b in s]
    assert [s is not None for s in shortcuts] == [True, False, False, False] * 3
    assert all(s.kernel_size == (1, 1) for s in shortcuts if s is not None)
    assert not any(isinstance(x, nn.Dropout) for x in m.modules())  # dropout 0 by default
    assert all(c.bias is None for c in m.modules() if isinstance(c, nn.Conv2d))


def test_runs_on_cifar_batch_with_timm_interface():
    torch.manual_seed(0)
    m = timm.create_model("wide_resnet28_8", num_classes=0).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fmap = m.forward_features(x)
        pooled = m(x)
        assert fmap.shape == (2, 512, 8, 8) and fmap.min() >= 0  # after the final BN-ReLU
        assert pooled.shape == (2, m.num_features) == (2, 512)
        torch.testing.assert_close(pooled, fmap.mean((2, 3)))
        torch.testing.assert_close(m.forward_head(fmap, pre_logits=True), pooled)
        m.reset_classifier(10)
        assert m(x).shape == (2, 10) and m.get_classifier().out_features == 10
    cfg = m.pretrained_cfg
    assert cfg["input_size"] == (3, 32, 32) and cfg["classifier"] == "fc"
    assert timm.is_model("wide_resnet28_8") and "wide_resnet28_8" in timm.list_models("wide_*")


def test_bad_depth_is_a_clear_error():
    with pytest.raises(HafclsError, match="6n \\+ 4"):
        WideResNet(depth=27)
