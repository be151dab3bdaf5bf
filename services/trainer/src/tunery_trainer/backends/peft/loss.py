"""Cross-entropy through the frozen vocabulary projection, in chunks: the [tokens, vocab] logits never exist at once."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class _FrozenHeadCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` against `targets`, never holding all [tokens, vocab] logits.

    The head is frozen (LoRA does not train it), so the only gradient is d(hidden) = (softmax - onehot) @ weight;
    it is computed chunk by chunk in the forward pass and kept (tokens x hidden, small), which costs the same
    FLOPs as autograd's forward + backward but a few hundred MB instead of several GB for a 49k vocabulary.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w = weight.to(hidden.dtype)
        grad = torch.empty_like(hidden)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        for i in range(0, hidden.shape[0], chunk):
            logits = (hidden[i : i + chunk] @ w.T).float()
            t = targets[i : i + chunk]
            rows = torch.arange(t.shape[0], device=t.device)
            lse = torch.logsumexp(logits, dim=-1)
            loss += (lse - logits[rows, t]).sum()
            correct += (logits.argmax(-1) == t).sum()
            probs = logits.sub_(lse[:, None]).exp_()
            probs[rows, t] -= 1.0
            grad[i : i + chunk] = probs.to(w.dtype) @ w
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_correct: Any) -> tuple[Any, ...]:
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None, None


def head_loss(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, correct argmax count) of the trained positions; chunks of ~256 MB of logits."""
    chunk = chunk or max(64, (1 << 26) // weight.shape[0])
    if not hidden.requires_grad:  # evaluation: no gradient to prepare
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        w = weight.to(hidden.dtype)
        for i in range(0, hidden.shape[0], chunk):
            logits = (hidden[i : i + chunk] @ w.T).float()
            t = targets[i : i + chunk]
            loss += F.cross_entropy(logits, t, reduction="sum")
            correct += (logits.argmax(-1) == t).sum()
        return loss, correct
    loss, correct = _FrozenHeadCrossEntropy.apply(hidden, weight, targets, chunk)
    return loss, correct
