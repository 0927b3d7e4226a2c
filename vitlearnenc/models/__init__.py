"""Plain ``nn.Module``s and factories: timm ViTs and CIFAR CNNs (:func:`build_classifier`), the
LE/ELE adaptation networks, ShakeDrop PyramidNet, U-Net and GAN networks for the attacks
(:func:`build_attack_net`). No Lightning, Hydra or wandb in this package."""

from vitlearnenc.models.adaptation import (
    AdaptedClassifier,
    BlockSpectralNorm,
    BlockwiseBatchNorm,
    BlockwiseConv,
    ELEAdaptNet,
    LEAdaptNet,
    build_adaptation,
    l12_penalty,
    smoothness_penalty,
)
from vitlearnenc.models.factory import (
    VIT_PRESETS,
    CheckpointError,
    UnknownModelError,
    build_attack_net,
    build_classifier,
    count_parameters,
    list_attack_nets,
    list_classifiers,
    load_state_dict_file,
)
from vitlearnenc.models.gan import (
    DCGANDiscriminator,
    FeatureDecoder,
    SAGANDiscriminator,
    SelfAttention,
    SIAGANAdaptation,
    SIAGANGenerator,
    init_dcgan_weights,
    lab_generator,
)
from vitlearnenc.models.key_transform import (
    ModelTransformError,
    check_transformable,
    patch_vector_permutation,
    transform_vit,
)
from vitlearnenc.models.pyramidnet import PyramidNet
from vitlearnenc.models.resnet_cifar import CifarResNet, resnet18_cifar, resnet20_cifar
from vitlearnenc.models.shakedrop import ShakeDrop, ShakeDropFunction, shake_drop
from vitlearnenc.models.unet import BlockwiseInverseNet, UNet

__all__ = [
    "ModelTransformError",
    "check_transformable",
    "patch_vector_permutation",
    "transform_vit",
    "VIT_PRESETS",
    "AdaptedClassifier",
    "BlockSpectralNorm",
    "BlockwiseBatchNorm",
    "BlockwiseConv",
    "BlockwiseInverseNet",
    "CheckpointError",
    "CifarResNet",
    "DCGANDiscriminator",
    "ELEAdaptNet",
    "FeatureDecoder",
    "LEAdaptNet",
    "PyramidNet",
    "SAGANDiscriminator",
    "SIAGANAdaptation",
    "SIAGANGenerator",
    "SelfAttention",
    "ShakeDrop",
    "ShakeDropFunction",
    "UNet",
    "UnknownModelError",
    "build_adaptation",
    "build_attack_net",
    "build_classifier",
    "count_parameters",
    "init_dcgan_weights",
    "l12_penalty",
    "lab_generator",
    "list_attack_nets",
    "list_classifiers",
    "load_state_dict_file",
    "resnet18_cifar",
    "resnet20_cifar",
    "shake_drop",
    "smoothness_penalty",
]
