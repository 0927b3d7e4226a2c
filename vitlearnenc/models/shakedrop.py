"""ShakeDrop regularisation (Yamada, Iwamura, Akiba, Kise, IEEE Access 2019).

Hand-written because neither torch nor timm ships it: the forward pass scales a residual branch
by ``b + (1 - b) * alpha`` and the backward pass by ``b + (1 - b) * beta`` with an *independent*
``beta``, which autograd cannot express without a custom :class:`torch.autograd.Function`.
"""

from __future__ import annotations

import torch
from torch import nn

from vitlearnenc.errors import InputError


class ShakeDropFunction(torch.autograd.Function):
    """Pure ShakeDrop op: the random draws are inputs, so the op itself is deterministic.

    Forward: ``x * (gate + (1 - gate) * alpha)``; backward: ``grad * (gate + (1 - gate) * beta)``.
    With ``beta == alpha`` the backward is the true derivative (checked with ``gradcheck``).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        gate: torch.Tensor,
        alpha: torch.Tensor,
        beta: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(gate, beta)
        return x * (gate + (1 - gate) * alpha)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_output: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        gate, beta = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad_output * (gate + (1 - gate) * beta), None, None, None


def shake_drop(
    x: torch.Tensor, gate: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """Apply :class:`ShakeDropFunction`; ``gate``, ``alpha``, ``beta`` broadcast against ``x``."""
    return ShakeDropFunction.apply(x, gate, alpha, beta)


class ShakeDrop(nn.Module):
    """ShakeDrop on a residual branch ``(B, C, H, W)``, one draw per sample ("image level").

    Training: ``gate ~ Bernoulli(1 - drop_prob)``, ``alpha ~ U(alpha_range)``,
    ``beta ~ U(beta_range)`` per sample. Evaluation: the expectation
    ``(1 - drop_prob) + drop_prob * E[alpha]`` (``= 1 - drop_prob`` for the default ``[-1, 1]``).
    The owruby/shake-drop_pytorch code used by Madono et al. draws one gate per mini-batch
    instead; per-sample draws follow the paper.

    Args:
        drop_prob: probability that the branch is perturbed (``1 - p_l`` in the paper).
        alpha_range: forward scale range used when perturbed.
        beta_range: backward scale range used when perturbed.
    """

    def __init__(
        self,
        drop_prob: float,
        alpha_range: tuple[float, float] = (-1.0, 1.0),
        beta_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_prob <= 1.0:
            raise InputError(f"drop_prob must be in [0, 1], got {drop_prob}")
        self.drop_prob = float(drop_prob)
        self.alpha_range = (float(alpha_range[0]), float(alpha_range[1]))
        self.beta_range = (float(beta_range[0]), float(beta_range[1]))

    def expected_scale(self) -> float:
        """``E[gate + (1 - gate) * alpha]``: the factor applied in evaluation mode."""
        mean_alpha = sum(self.alpha_range) / 2
        return (1.0 - self.drop_prob) + self.drop_prob * mean_alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x * self.expected_scale()
        if self.drop_prob == 0.0:
            return x
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        gate = torch.full(shape, 1.0 - self.drop_prob, device=x.device, dtype=x.dtype).bernoulli_()
        alpha = torch.empty(shape, device=x.device, dtype=x.dtype).uniform_(*self.alpha_range)
        beta = torch.empty(shape, device=x.device, dtype=x.dtype).uniform_(*self.beta_range)
        return shake_drop(x, gate, alpha, beta)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.4f}"
