"""The attack registry: one :class:`Attack` object per attack, registered where it is defined.

As ``timm`` registers models, each attack module registers its attack at import time with
:func:`register_attack`; :func:`get_attack` / :func:`list_attacks` import every module of
``vitlearnenc/attacks/`` and every ``vitlearnenc/tasks/attack_*.py`` first, so a new attack
module is found without being listed anywhere. An attack declares

* **applicability** by cipher *capabilities* (``applies(cipher)`` returns None or the reason it
  does not apply; the cipher is the public algorithm with a throw-away key, see
  :func:`~vitlearnenc.ciphers.probe_cipher`),
* the **inputs** it needs (:class:`Input`: which :class:`InputKind`, and which option of the
  attack config says how many),
* how it **runs** (``run(context) -> AttackOutcome``), and
* how its key estimate is **scored** against the victim key (``score_key``; researcher side,
  after the attack has finished).

The victim's key never reaches an attack: :class:`AttackContext` holds uint8 tensors, the
cipher's public name/options and the attack's settings only.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch

from vitlearnenc.ciphers import Cipher, CipherKey
from vitlearnenc.errors import InputError, VitlearnencError


class NotApplicableError(VitlearnencError, ValueError):
    """The attack does not apply to this cipher (the message says why)."""


class UnknownAttackError(VitlearnencError, KeyError):
    """An attack kind that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


class InputKind(str, Enum):
    """What an attacker holds besides the victim's test ciphertexts (which every attack gets).

    The victim side prepares each declared kind; its size is the value of the attack config
    option that :attr:`Input.count` names.
    """

    #: public plain images (training split, disjoint from every victim image)
    PUBLIC_IMAGES = "public_images"
    #: known (plain, cipher) pairs of victim training images under the victim key
    KNOWN_PAIRS = "known_pairs"
    #: victim training images encrypted with the victim key, with their class labels
    LABELLED_CIPHERTEXTS = "labelled_ciphertexts"
    #: more victim training images encrypted with the victim key, nothing else (corpus-level
    #: attacks on one key: N ciphertexts, N = the count option)
    VICTIM_CORPUS = "victim_corpus"
    #: the plain images behind the victim ciphertexts: only the calibration rows use them
    VICTIM_PLAIN = "victim_plain"


#: kinds drawn from the victim's training images under the victim key (at most one per attack)
VICTIM_TRAIN_KINDS = (
    InputKind.KNOWN_PAIRS,
    InputKind.LABELLED_CIPHERTEXTS,
    InputKind.VICTIM_CORPUS,
)


@dataclass(frozen=True)
class Input:
    """One declared input: its kind and the attack-config option holding how many images
    (None: no count, e.g. :attr:`InputKind.VICTIM_PLAIN`)."""

    kind: InputKind
    count: str | None = None


@dataclass(frozen=True, eq=False)
class AttackContext:
    """Everything one attack run may use. Tensors are uint8 ``(N, C, H, W)``; only the inputs
    the attack declared are set.

    Attributes:
        victim_ciphertexts: the victim's test images under the victim key (to restore).
        cipher: the public algorithm (name, block size, capabilities) with a throw-away
            key; never the victim's key.
        cipher_options: the cipher's configured public options (``cfg.cipher.options``).
        settings: the attack's config (``cfg.attack``) as plain containers.
        public_images: public plain images.
        known_plain, known_ciphertexts: known pairs under the victim key.
        labelled_ciphertexts, labels: labelled victim training ciphertexts.
        corpus: further ciphertexts under the victim key (no plain images, no labels).
        victim_plain: plain images behind ``victim_ciphertexts`` (calibration rows only).
        make_trainer: a Lightning ``Trainer`` from ``cfg.trainer`` with the run's loggers
            (learned attacks).
    """

    victim_ciphertexts: torch.Tensor
    cipher: Cipher
    cipher_options: Mapping[str, Any]
    settings: Mapping[str, Any]
    public_images: torch.Tensor | None = None
    known_plain: torch.Tensor | None = None
    known_ciphertexts: torch.Tensor | None = None
    labelled_ciphertexts: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    corpus: torch.Tensor | None = None
    victim_plain: torch.Tensor | None = None
    make_trainer: Callable[[], Any] | None = None

    def need(self, name: str) -> Any:
        """The input ``name`` (an attribute above), or a clear error if it was not prepared
        (the attack did not declare it)."""
        value = getattr(self, name)
        if value is None:
            raise NotApplicableError(
                f"this attack needs {name}, which was not prepared: declare it in the attack's "
                "inputs (Input(InputKind....)) and give it a count"
            )
        return value


@dataclass
class AttackOutcome:
    """Restored victim images plus what the attack estimated and how much it cost.

    Attributes:
        restored: ``(N, 3, H, W)`` uint8 restorations of the victim ciphertexts.
        estimate: the attack's key estimate, scored by its attack's ``score_key``.
        budget: training budget and cost (the run adds ``seconds``).
    """

    restored: torch.Tensor
    estimate: Any = None
    budget: dict[str, Any] = field(default_factory=dict)


def always(cipher: Cipher) -> str | None:
    """Applicability of attacks that run on any cipher."""
    return None


def needs_structure(*structures: str, reason: str) -> Callable[[Cipher], str | None]:
    """Applicability: the cipher's :attr:`~vitlearnenc.ciphers.Cipher.structure` is one of
    ``structures``; otherwise ``reason`` (``{cipher}`` is replaced by the cipher's name)."""

    def applies(cipher: Cipher) -> str | None:
        return None if cipher.structure in structures else reason.format(cipher=cipher.name)

    return applies


@dataclass(frozen=True)
class Attack:
    """A registered attack (see the module docstring).

    Attributes:
        name: the ``attack.kind`` of the configs.
        run: ``run(context) -> AttackOutcome``.
        applies: ``applies(cipher) -> None | reason``, judged on capabilities.
        inputs: the declared inputs, or a function of the cipher returning them (an attack
            whose solver differs per cipher structure may need different inputs).
        score_key: ``score_key(estimate, victim_key) -> dict`` for :attr:`AttackOutcome.estimate`.
        same_layout: the attack restores images of the plain layout, so ciphers that change it
            (``output_shape``, e.g. grayscale EtC) do not apply.
    """

    name: str
    run: Callable[[AttackContext], AttackOutcome]
    applies: Callable[[Cipher], str | None] = always
    inputs: Sequence[Input] | Callable[[Cipher], Sequence[Input]] = ()
    score_key: Callable[[Any, CipherKey], dict[str, Any]] | None = None
    same_layout: bool = True

    def inputs_for(self, cipher: Cipher) -> tuple[Input, ...]:
        """The inputs this attack needs against ``cipher``."""
        inputs = tuple(self.inputs(cipher) if callable(self.inputs) else self.inputs)
        if sum(i.kind in VICTIM_TRAIN_KINDS for i in inputs) > 1:
            raise InputError(f"attack {self.name!r} declares more than one victim-training input")
        return inputs

    def check_applicable(self, cipher: Cipher) -> None:
        """Raise :class:`NotApplicableError` with the reason if the attack cannot run on it."""
        if self.same_layout:
            channels = 3
            layout = cipher.output_shape(channels)
            if layout != (channels, *cipher.image_size):
                raise NotApplicableError(
                    f"the {cipher.name} cipher changes the image layout to {layout}; the "
                    "attacks here restore images of the plain layout"
                )
        reason = self.applies(cipher)
        if reason:
            raise NotApplicableError(reason)

    def score(self, estimate: Any, key: CipherKey | None) -> dict[str, Any]:
        """Key-recovery rates of ``estimate`` against the victim ``key`` ({} if nothing)."""
        if self.score_key is None or estimate is None or key is None:
            return {}
        return self.score_key(estimate, key)


_REGISTRY: dict[str, Attack] = {}
#: packages whose modules may register attacks: all of attacks/, and tasks/attack_*.py
_SOURCES = (("vitlearnenc.attacks", ""), ("vitlearnenc.tasks", "attack_"))


def register_attack(
    name: str,
    *,
    applies: Callable[[Cipher], str | None] = always,
    inputs: Sequence[Input] | Callable[[Cipher], Sequence[Input]] = (),
    score_key: Callable[[Any, CipherKey], dict[str, Any]] | None = None,
    same_layout: bool = True,
) -> Callable[[Callable[[AttackContext], AttackOutcome]], Callable[[AttackContext], AttackOutcome]]:
    """Decorator of an attack's run function: register it as attack ``name`` (the
    ``attack.kind`` of its config) with what it applies to, needs and how it is scored."""

    def register(
        run: Callable[[AttackContext], AttackOutcome],
    ) -> Callable[[AttackContext], AttackOutcome]:
        known = _REGISTRY.get(name)
        if known is not None and known.run.__qualname__ != run.__qualname__:
            raise InputError(f"attack {name!r} is registered twice")
        _REGISTRY[name] = Attack(name, run, applies, inputs, score_key, same_layout)
        return run

    return register


def _discover() -> None:
    """Import every module that may register attacks (idempotent)."""
    for package_name, prefix in _SOURCES:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.startswith(prefix):
                importlib.import_module(f"{package_name}.{module.name}")


def list_attacks() -> list[str]:
    """Registered attack kinds, sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_attack(name: str) -> Attack:
    """The attack registered as ``name``."""
    if name not in _REGISTRY:
        _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownAttackError(
            f"unknown attack.kind {name!r}; choose one of {', '.join(list_attacks())}"
        ) from None
