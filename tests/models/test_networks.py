"""Behaviour of the hand-written networks: ShakeDrop, PyramidNet, CIFAR ResNets, block-wise
layers, LE/ELE adaptation, U-Net, block-wise inverse net and the GAN networks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close

from vitlearnenc.models import (
    AdaptedClassifier,
    BlockwiseBatchNorm,
    BlockwiseConv,
    BlockwiseInverseNet,
    CifarResNet,
    DCGANDiscriminator,
    ELEAdaptNet,
    LEAdaptNet,
    PyramidNet,
    SAGANDiscriminator,
    ShakeDrop,
    ShakeDropFunction,
    SIAGANGenerator,
    UNet,
    UnknownModelError,
    build_adaptation,
    build_attack_net,
    l12_penalty,
    lab_generator,
    list_attack_nets,
    resnet18_cifar,
    shake_drop,
    smoothness_penalty,
)

torch.set_num_threads(1)


def _blocks(x: torch.Tensor, m: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C, m, m) row-major blocks (test-side reference)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // m, m, w // m, m).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c, m, m)


# --------------------------------------------------------------------------- ShakeDrop


def test_shakedrop_eval_is_expectation() -> None:
    x = torch.randn(4, 3, 5, 5)
    layer = ShakeDrop(0.25).eval()
    assert_close(layer(x), x * 0.75)
    shifted = ShakeDrop(0.5, alpha_range=(0.0, 1.0)).eval()
    assert_close(shifted(x), x * (0.5 + 0.5 * 0.5))


def test_shakedrop_train_draws_differ_and_stay_in_range() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 2, 3, 3, requires_grad=True)
    layer = ShakeDrop(1.0).train()  # always perturbed: out = alpha * x per sample
    out1, out2 = layer(x), layer(x)
    assert not torch.allclose(out1, out2)
    ratio = (out1 / x).detach().flatten(1)
    assert_close(ratio, ratio[:, :1].expand_as(ratio))  # one alpha per sample
    assert ratio.abs().max() <= 1.0 and ratio.min() < 0 < ratio.max()
    out1.sum().backward()
    first = x.grad.clone()
    x.grad = None
    layer(x).sum().backward()
    assert not torch.allclose(first, x.grad)  # independent beta draws
    assert first.min() >= 0 and first.max() <= 1  # beta in [0, 1]


def test_shakedrop_zero_prob_is_identity_in_training() -> None:
    x = torch.randn(3, 2, 4, 4)
    assert_close(ShakeDrop(0.0).train()(x), x)


def test_shakedrop_backward_uses_beta_not_alpha() -> None:
    x = torch.randn(4, 2, 3, 3, requires_grad=True)
    gate = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(4, 1, 1, 1)
    alpha = torch.tensor([0.3, -0.7, 0.9, 0.1]).view(4, 1, 1, 1)
    beta = torch.tensor([0.2, 0.5, 0.8, 0.4]).view(4, 1, 1, 1)
    out = shake_drop(x, gate, alpha, beta)
    assert_close(out, x * (gate + (1 - gate) * alpha))
    out.backward(torch.ones_like(out))
    assert_close(x.grad, (gate + (1 - gate) * beta).expand_as(x))


def test_shakedrop_function_gradcheck() -> None:
    """With beta == alpha the custom backward is the true derivative."""
    x = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    gate = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).view(3, 1, 1, 1)
    alpha = torch.tensor([0.4, -0.6, 0.25], dtype=torch.float64).view(3, 1, 1, 1)
    assert torch.autograd.gradcheck(ShakeDropFunction.apply, (x, gate, alpha, alpha.clone()))


def test_shakedrop_rejects_bad_probability() -> None:
    with pytest.raises(ValueError, match="drop_prob"):
        ShakeDrop(1.5)


# --------------------------------------------------------------------------- PyramidNet / ResNets


def test_pyramidnet_schedule_and_forward() -> None:
    net = PyramidNet(depth=20, alpha=24, num_classes=5)
    units = list(net.units)
    assert len(units) == 9
    probs = [u.shake_drop.drop_prob for u in units]
    assert_close(torch.tensor(probs), torch.arange(1, 10) * 0.5 / 9, check_dtype=False)
    assert units[-1].out_chans == 16 + 24
    x = torch.randn(2, 3, 32, 32)
    logits = net(x)
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_pyramidnet_bottleneck_and_depth_check() -> None:
    net = PyramidNet(depth=11, alpha=12, num_classes=3, block="bottleneck", in_chans=16).eval()
    assert net.units[-1].out_chans == 4 * (16 + 12)
    assert net(torch.randn(2, 16, 16, 16)).shape == (2, 3)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        PyramidNet(depth=21)
    with pytest.raises(ValueError, match="block"):
        PyramidNet(depth=20, block="wide")  # type: ignore[arg-type]


def test_cifar_resnet_downsamples_twice() -> None:
    net = CifarResNet(depth=8, num_classes=4).eval()
    feats = net.stages(F.relu(net.bn1(net.conv1(torch.randn(2, 3, 32, 32)))))
    assert feats.shape == (2, 64, 8, 8)
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(depth=21)


def test_resnet18_cifar_stem_keeps_resolution() -> None:
    net = resnet18_cifar(num_classes=10).eval()
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)
    assert net.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 512, 4, 4)


# --------------------------------------------------------------------------- block-wise layers


def test_blockwise_conv_equals_one_conv_per_block() -> None:
    torch.manual_seed(0)
    layer = BlockwiseConv(3, 5, block_size=4, num_blocks=4, spectral_norm=False)
    x = torch.randn(2, 3, 8, 8)
    out = layer(x)  # (B, N, 5)
    blocks = _blocks(x, 4)
    expected = torch.stack(
        [F.conv2d(blocks[:, n], layer.weight[n], stride=4).flatten(1) for n in range(4)], dim=1
    )
    assert_close(out, expected)
    with pytest.raises(ValueError, match="4 blocks"):
        layer(torch.randn(1, 3, 12, 12))


def test_blockwise_spectral_norm_normalises_each_block() -> None:
    torch.manual_seed(0)
    layer = BlockwiseConv(2, 6, block_size=2, num_blocks=3).train()
    layer.parametrizations.weight.original.data[1] *= 50.0  # very different raw scales
    x = torch.randn(1, 2, 2, 6)
    for _ in range(30):
        layer(x)
    sigmas = torch.linalg.matrix_norm(layer.weight.detach().flatten(2), ord=2)
    assert_close(sigmas, torch.ones(3), atol=1e-3, rtol=0)
    layer.eval()
    first = layer.weight.detach().clone()
    layer(x)
    assert_close(layer.weight.detach(), first)  # no power iteration in eval


def test_blockwise_batchnorm_normalises_each_block_separately() -> None:
    bn = BlockwiseBatchNorm(channels=2, num_blocks=3).train()
    x = torch.randn(16, 3, 2) * torch.tensor([1.0, 5.0, 20.0]).view(1, 3, 1) + 7.0
    y = bn(x)
    assert_close(y.mean(0), torch.zeros(3, 2), atol=1e-5, rtol=0)
    assert_close(y.var(0, unbiased=False), torch.ones(3, 2), atol=1e-3, rtol=0)


# --------------------------------------------------------------------------- adaptation networks


def test_le_adaptnet_is_blockwise_local() -> None:
    torch.manual_seed(0)
    net = LEAdaptNet(block_size=4).eval()
    x = torch.randn(1, 3, 16, 16)
    y = net(x)
    assert y.shape == (1, 16, 16, 16)
    x2 = x.clone()
    x2[:, :, 0:4, 4:8] += 1.0  # change block 1 only
    changed = (net(x2) - y).abs().sum(dim=(0, 1)) > 0
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[0:4, 4:8] = True
    assert torch.equal(changed, expected)
    assert net.regularization_loss().item() == 0.0


def test_ele_mixing_init_and_permutation_moves_blocks() -> None:
    torch.manual_seed(0)
    net = ELEAdaptNet(block_size=2, num_blocks=4, out_chans=3).eval()
    bound = 1 / math.sqrt(4)
    assert net.mixing.abs().max() <= bound and net.mixing.std() > 0.1 * bound
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        net.mixing.copy_(torch.eye(4))
        identity_out = net(x)
        perm = torch.tensor(
            [2, 0, 3, 1]
        )  # output block k takes the features of input block perm[k]
        net.mixing.copy_(torch.eye(4)[:, perm])
        moved = net(x)
    assert_close(_blocks(moved, 2), _blocks(identity_out, 2)[:, perm])


def test_ele_regularization_is_finite_and_differentiable() -> None:
    torch.manual_seed(0)
    net = ELEAdaptNet(block_size=4, num_blocks=4).train()
    with pytest.raises(RuntimeError, match="forward"):
        net.regularization_loss()
    out = net(torch.randn(3, 3, 8, 8))
    reg = net.regularization_loss()
    assert torch.isfinite(reg) and reg > 0
    reg.backward()
    assert net.mixing.grad is not None and net.mixing.grad.abs().sum() > 0
    assert net.conv.parametrizations.weight.original.grad.abs().sum() > 0
    expected = 1e-3 * l12_penalty(net.mixing) + 0.1 * smoothness_penalty(out)
    assert_close(reg.detach(), expected.detach())


def test_penalties() -> None:
    perm = torch.eye(5)[torch.tensor([3, 1, 4, 0, 2])]
    assert l12_penalty(-2.0 * perm).item() == 0.0
    dense = torch.full((4, 4), 0.5)
    assert_close(l12_penalty(dense), torch.tensor((8 * (2.0 - 1.0)) / 16))
    assert smoothness_penalty(torch.full((2, 16, 5, 5), 3.0)).item() == 0.0
    ramp = torch.arange(4.0).view(1, 1, 1, 4).expand(1, 16, 4, 4)
    # only the first 3 of 16 channels count: 3 channels * 3x3 grid * 1^2, / (1 * 3 * 4 * 16)
    assert_close(smoothness_penalty(ramp), torch.tensor(27 / 192))


def test_adapted_classifier_and_build_adaptation() -> None:
    head = nn.Sequential(nn.Flatten(), nn.LazyLinear(7))
    model = AdaptedClassifier(build_adaptation("ele", 4, 8), head)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 7)
    assert torch.isfinite(model.regularization_loss())
    assert isinstance(build_adaptation("le", 4, 32).conv, nn.Conv2d)
    with pytest.raises(ValueError, match="'le' or 'ele'"):
        build_adaptation("xyz")
    with pytest.raises(ValueError, match="multiple of the block size"):
        build_adaptation("ele", 4, 30)


# --------------------------------------------------------------------------- ITN / GAN networks


def test_unet_shape_range_and_size_check() -> None:
    net = UNet(base_channels=4, depth=2)
    y = net(torch.randn(2, 3, 16, 16) * 5)
    assert y.shape == (2, 3, 16, 16)
    assert y.min() >= -1 and y.max() <= 1
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 3, 18, 18))


def test_unet_default_widths_are_64_to_1024() -> None:
    with torch.device("meta"):
        net = UNet()
    assert net.inc[0].out_channels == 64
    assert net.downs[-1][1][3].out_channels == 1024
    assert net.head.in_channels == 64


@pytest.mark.parametrize(("block", "widths"), [(4, (48, 48, 512)), (1, (64, 128, 256))])
def test_blockwise_inverse_net_lab_widths(block: int, widths: tuple[int, int, int]) -> None:
    net = BlockwiseInverseNet(block)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert tuple(c.out_channels for c in convs[:3]) == widths
    assert convs[0].kernel_size == (block, block) and convs[0].stride == (block, block)
    y = net(torch.randn(2, 3, 8, 8))
    assert y.shape == (2, 3, 8, 8) and y.abs().max() <= 1
    assert not any(isinstance(m, nn.Sigmoid) for m in net.modules())


def test_blockwise_inverse_net_rejects_bad_widths() -> None:
    with pytest.raises(ValueError, match="multiple of block_size"):
        BlockwiseInverseNet(4, widths=(8, 8, 30))


@pytest.mark.parametrize(("block", "shared"), [(4, False), (1, False), (4, True)])
def test_siagan_generator(block: int, shared: bool) -> None:
    net = SIAGANGenerator(block, img_size=8, width=8, shared_adaptation=shared)
    feature = net.adaptation(torch.randn(2, 3, 8, 8))
    assert feature.shape == (2, 16, 8, 8)
    y = net(torch.randn(2, 3, 8, 8) * 3)
    assert y.shape == (2, 3, 8, 8) and y.abs().max() <= 1
    sn_convs = [m for m in net.decoder.modules() if isinstance(m, nn.Conv2d)]
    assert all(hasattr(m, "parametrizations") for m in sn_convs) and len(sn_convs) == 9


def test_sagan_discriminator() -> None:
    net = SAGANDiscriminator(img_size=16, width=1 / 16)
    attn = [m for m in net.modules() if type(m).__name__ == "SelfAttention"]
    assert len(attn) == 2 and all(a.gamma.item() == 0 for a in attn)  # starts as identity
    scores = net(torch.randn(3, 3, 16, 16))
    assert scores.shape == (3,)
    scores.sum().backward()
    with pytest.raises(ValueError, match="img_size=32"):
        net(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("size", [32, 64])
def test_dcgan_discriminator(size: int) -> None:
    net = DCGANDiscriminator(width=8)
    assert net(torch.randn(2, 3, size, size)).shape == (2,)
    first = net.net[0].weight
    assert 0.01 < first.std().item() < 0.03


def test_lab_generator_and_attack_net_registry() -> None:
    gen = lab_generator(4)
    assert isinstance(gen, BlockwiseInverseNet)
    assert gen(torch.randn(1, 3, 8, 8)).abs().max() <= 1
    small = {
        "unet": dict(base_channels=4, depth=1),
        "blockwise_inverse": dict(block_size=2),
        "siagan_generator": dict(block_size=2, img_size=16, width=4),
        "lab_generator": dict(block_size=2),
        "sagan_discriminator": dict(img_size=16, width=1 / 32),
        "dcgan_discriminator": dict(width=4),
    }
    assert sorted(small) == list_attack_nets()
    for name, kwargs in small.items():
        out = build_attack_net(name, **kwargs).eval()(torch.rand(2, 3, 16, 16) * 2 - 1)
        assert out.shape in {(2,), (2, 3, 16, 16)}
    with pytest.raises(UnknownModelError, match="unet"):
        build_attack_net("vae")
