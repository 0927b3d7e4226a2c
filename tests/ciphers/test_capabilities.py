"""Cipher capabilities: code outside ``ciphers/`` decides by them, never by a cipher's name."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest
import timm

from vitlearnenc.ciphers import (
    LinearPatchCipher,
    PreEncryptedCipher,
    build_cipher,
    canonical_cipher_name,
    get_cipher_class,
    list_ciphers,
    probe_cipher,
)
from vitlearnenc.models.key_transform import (
    ModelTransformError,
    absorbable_permutations,
    check_transformable,
)

PACKAGE = Path(__file__).resolve().parents[2] / "vitlearnenc"
#: comparisons with a literal that happens to be a cipher name but compares something else
#: (file relative to the package, the other operand's source)
NOT_CIPHER_NAMES = {
    ("models/adaptation.py", "kind"),  # the adaptation network's kind (le/ele networks)
    ("runs/keys.py", "source"),  # key=none, a key source
}


def _cipher_names() -> set[str]:
    names = set(list_ciphers())
    for name in list_ciphers():
        names.update(get_cipher_class(name).aliases)
    return names


def _literals(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for element in node.elts for s in _literals(element)]
    return []


def name_tests(source: str, where: str, names: set[str]) -> list[str]:
    """``==``/``!=``/``in``/``not in`` comparisons of anything with a cipher-name literal."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for left, op, right in zip(operands, node.ops, operands[1:]):  # noqa: B905
            if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                continue
            for literal_side, other in ((left, right), (right, left)):
                hits = names.intersection(_literals(literal_side))
                if hits and (where, ast.unparse(other)) not in NOT_CIPHER_NAMES:
                    found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_code_outside_ciphers_compares_a_cipher_name_to_a_literal() -> None:
    names = _cipher_names()
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if "ciphers" not in path.relative_to(PACKAGE).parts[:1]
        for hit in name_tests(path.read_text(), path.relative_to(PACKAGE).as_posix(), names)
    ]
    assert not found, "decide by a cipher capability (Cipher attributes), not its name:\n" + (
        "\n".join(found)
    )


def test_the_guard_catches_name_tests() -> None:
    names = _cipher_names()
    caught = name_tests(
        'if cfg.cipher.name == "pe": pass\nif name in ("proposed", "le"): pass\n'
        'ok = "etc" != cipher\nfine = kind == "fr"',
        "x.py",
        names,
    )
    assert len(caught) == 3


def test_no_two_cipher_modules_import_each_other() -> None:
    imports: dict[str, set[str]] = {}
    for path in (PACKAGE / "ciphers").glob("*.py"):
        tree = ast.parse(path.read_text())
        imports[path.stem] = {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("vitlearnenc.ciphers.")
        }
    mutual = sorted(
        (a, b) for a, deps in imports.items() for b in deps if a < b and a in imports.get(b, ())
    )
    assert not mutual


@pytest.mark.parametrize(
    ("name", "options"),
    [
        (name, {})
        for name in list_ciphers()
        if get_cipher_class(name).keyed and name not in ("pe", "etc", "proposed")
    ]
    + [
        ("proposed", {"channel_mix": False}),
        ("proposed", {"channel_mix": True}),
        ("pe", {"per_image_keys": False}),
        ("pe", {"per_image_keys": True}),
        ("etc", {"etc_channel_mode": "permute"}),
        ("etc", {"etc_channel_mode": "original"}),
    ],
    ids=str,
)
def test_absorbable_by_vit_says_whether_a_vit_can_absorb_the_key(name: str, options: dict) -> None:
    cipher = probe_cipher(name, 32, 4, **options)
    vit = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=4, embed_dim=48, depth=1, num_heads=1,
        num_classes=2,
    )  # fmt: skip
    if cipher.absorbable_by_vit:
        check_transformable(vit, cipher)
    else:
        with pytest.raises(ModelTransformError):
            check_transformable(vit, cipher)
    if cipher.absorbable_by_vit and not isinstance(cipher, LinearPatchCipher):
        pi, sigma = absorbable_permutations(cipher, channels=3)
        assert sorted(pi.tolist()) == list(range(64)) and len(sigma) == 3 * 4 * 4


def test_per_key_capabilities_follow_the_options() -> None:
    assert probe_cipher("pe", 32, 1).per_image_keys
    assert not probe_cipher("pe", 32, 1, per_image_keys=False).per_image_keys
    assert probe_cipher("proposed", 32, 4).structure == "pixel_shuffled_blocks"
    assert probe_cipher("proposed", 32, 4, channel_mix=True).structure is None
    assert probe_cipher("etc", 32, 4).structure == "etc_blocks"
    assert probe_cipher("etc", 32, 4, etc_channel_mode="original").structure is None
    assert probe_cipher("ele", 32, 4).structure == "per_block_nibble_maps"
    assert probe_cipher("pe", 32, 1).structure is None  # a fresh key per image
    assert probe_cipher("pe", 32, 1, per_image_keys=False).structure == "per_pixel_value_maps"
    assert get_cipher_class("pe").fixed_key_options({"per_image_keys": True}) == {
        "per_image_keys": False
    }


def test_none_is_a_deprecated_alias_of_pre_encrypted() -> None:
    with pytest.warns(FutureWarning, match="cipher=pre_encrypted"):
        assert get_cipher_class("none") is PreEncryptedCipher
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        cipher = build_cipher("none", 32, 4)
        assert canonical_cipher_name("none") == "pre_encrypted"
    assert cipher.name == "pre_encrypted" and cipher.pre_encrypted and not cipher.keyed
    assert "none" not in list_ciphers()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_cipher_class("pre_encrypted") is PreEncryptedCipher  # no warning
