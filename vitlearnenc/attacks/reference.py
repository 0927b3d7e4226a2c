"""Calibration rows: the best and the worst a restoration can score on these images.

``reference_plain`` "restores" the plain images themselves (SSIM 1, PSNR at the cap: the
ceiling); ``reference_random`` scores every image against an unrelated victim image (the
floor). Neither attacks anything; both read the plain victim images, which only these rows may
declare (:attr:`~vitlearnenc.attacks.registry.InputKind.VICTIM_PLAIN`).
"""

from __future__ import annotations

from vitlearnenc.attacks.registry import (
    AttackContext,
    AttackOutcome,
    Input,
    InputKind,
    register_attack,
)
from vitlearnenc.errors import InputError

_PLAIN = (Input(InputKind.VICTIM_PLAIN),)


@register_attack("reference_plain", inputs=_PLAIN, same_layout=False)
def reference_plain(context: AttackContext) -> AttackOutcome:
    """The ceiling: the plain images."""
    return AttackOutcome(context.need("victim_plain").clone())


@register_attack("reference_random", inputs=_PLAIN, same_layout=False)
def reference_random(context: AttackContext) -> AttackOutcome:
    """The floor: image i scored against the plain image count/2 positions further on."""
    plain = context.need("victim_plain")
    if len(plain) < 2:
        raise InputError("reference_random needs at least 2 victim images")
    return AttackOutcome(plain.roll(len(plain) // 2, dims=0))
