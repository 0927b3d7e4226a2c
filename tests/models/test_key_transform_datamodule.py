"""Key transformation through the real DataModule path: 32 -> 224 resize, block 16, patch 16,
for every absorbable cipher (the linear ones produce real-valued ciphertexts)."""

from __future__ import annotations

import pytest
import timm
import torch

from vitlearnenc.data import SyntheticDataModule
from vitlearnenc.models import transform_vit


@pytest.mark.parametrize("cipher", ["proposed", "orthomix", "orthomix_sub"])
def test_transformed_vit_on_encrypted_batches_equals_plain_vit_on_plain(cipher: str) -> None:
    common = dict(
        num_train=16,
        num_test=8,
        native_size=32,
        image_size=224,
        block_size=16,
        batch_size=8,
        num_workers=0,
        augment=False,
    )
    plain_dm = SyntheticDataModule(cipher="plain", **common)
    enc_dm = SyntheticDataModule(cipher=cipher, key_seed=5, **common)
    for dm in (plain_dm, enc_dm):
        dm.setup("test")
    images = next(iter(plain_dm.test_dataloader()))["image"]
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=10,
        img_size=224,
        patch_size=16,
        embed_dim=32,
        depth=1,
        num_heads=2,
    ).eval()
    with torch.no_grad():  # larger weights so that the logits depend strongly on the input
        for param in model.parameters():
            param.mul_(10 if param.ndim > 1 else 1)
    transformed = transform_vit(model, enc_dm.cipher.key)
    with torch.no_grad():
        expected = model(plain_dm.transform_batch(images, train=False))
        got = transformed(enc_dm.transform_batch(images, train=False))
        untransformed = model(enc_dm.transform_batch(images, train=False))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(untransformed, expected, atol=1e-2)
