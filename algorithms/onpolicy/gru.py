"""A GRU over a whole sequence with a hand-written backward pass, for the small recurrent encoders of VariBAD/RL^2.

``torch.nn.GRU`` on the CPU records ~20 autograd nodes per time step and its backward replays them one by one: on
GridWorld's encoder (hidden 64, batch 25, 60 steps) that per-op overhead, not arithmetic, is most of a VAE update.
Here the input projection ``x_t W_ih^T + b_ih`` of every step is one matrix product outside the loop (ordinary
autograd), and :class:`_GRURecurrence` runs the recurrence with one node for the whole sequence: its backward is
the textbook GRU gradient, ~12 tensor ops per step, with the weight gradients as two products after the loop.

Same equations as ``torch.nn.GRU`` (PyTorch's convention, Cho et al. 2014 with the reset gate applied after the
hidden-to-hidden product)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}

Optionally ``h_t`` is multiplied by ``keep_t`` (0 where a task ended after step t: the next step starts from the
prior), which is what an RL^2 rollout across task boundaries needs. Values equal ``torch.nn.GRU``'s up to float
rounding; ``tests/test_gru.py`` checks values and gradients against it and ``torch.autograd.gradcheck``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable


class _GRURecurrence(torch.autograd.Function):
    """``h_1..h_T`` from precomputed input projections ``gi (T, B, 3H)``, ``h0 (B, H)`` and the recurrent weights.

    Per step results are written in place (``out=``) into ``(T, B, .)`` buffers whose per-step views are made once
    (``unbind``), and what the backward pass needs elementwise from the forward (gate derivatives) is computed for
    all steps at once after the loop: each step costs ~8 tensor ops forward and ~8 backward.
    """

    @staticmethod
    def forward(ctx: Any, gi: torch.Tensor, h0: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor,
                keep: torch.Tensor | None) -> torch.Tensor:
        T, B, H3 = gi.shape
        H = H3 // 3
        hs = gi.new_empty(T + 1, B, H)  # h_0..h_T, each after its keep mask
        rz = gi.new_empty(T, B, 2 * H)  # reset and update gates of every step
        n = gi.new_empty(T, B, H)  # candidate state of every step
        gh = gi.new_empty(T, B, H3)  # W_hh h_{t-1} + b_hh of every step
        gi_rz, gi_n = gi[..., :2 * H].unbind(0), gi[..., 2 * H:].unbind(0)
        gh_t, gh_rz, gh_n = gh.unbind(0), gh[..., :2 * H].unbind(0), gh[..., 2 * H:].unbind(0)
        rz_t, n_t = rz.unbind(0), n.unbind(0)
        r_t, z_t = rz[..., :H].unbind(0), rz[..., H:].unbind(0)
        h_t = hs.unbind(0)
        keep_t = keep.unbind(0) if keep is not None else None
        hs[0] = h0
        w_t = weight_hh.t()
        for t in range(T):
            torch.addmm(bias_hh, h_t[t], w_t, out=gh_t[t])
            torch.add(gi_rz[t], gh_rz[t], out=rz_t[t]).sigmoid_()
            torch.addcmul(gi_n[t], r_t[t], gh_n[t], out=n_t[t]).tanh_()
            torch.lerp(n_t[t], h_t[t], z_t[t], out=h_t[t + 1])  # (1 - z) n + z h
            if keep_t is not None:
                h_t[t + 1].mul_(keep_t[t])
        ctx.save_for_backward(hs, rz, n, gh[..., 2 * H:], weight_hh, keep)
        return hs[1:]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hs, rz, n, gh_n, weight_hh, keep = ctx.saved_tensors
        T, B, H = grad_out.shape
        r, z = rz[..., :H], rz[..., H:]
        # d pre-activation / d h_t of every step, elementwise, for all steps at once
        to_pre_n = (1 - z) * (1 - n * n)  # h_t -> pre-tanh of n_t
        to_pre_z = (hs[:-1] - n) * z * (1 - z)  # h_t -> pre-sigmoid of z_t
        to_pre_r = gh_n * r * (1 - r)  # pre-tanh of n_t -> pre-sigmoid of r_t
        dgh = grad_out.new_empty(T, B, 3 * H)  # d loss / d (W_hh h_{t-1} + b_hh)
        dpre_n = grad_out.new_empty(T, B, H)  # d loss / d pre-tanh of n_t (= d gi_n)
        dgh_t, dpre_n_t = dgh.unbind(0), dpre_n.unbind(0)
        dgh_r, dgh_z, dgh_n = dgh[..., :H].unbind(0), dgh[..., H:2 * H].unbind(0), dgh[..., 2 * H:].unbind(0)
        to_pre_n_t, to_pre_z_t, to_pre_r_t = to_pre_n.unbind(0), to_pre_z.unbind(0), to_pre_r.unbind(0)
        r_t, z_t, g_t = r.unbind(0), z.unbind(0), grad_out.unbind(0)
        keep_t = keep.unbind(0) if keep is not None else None
        dh_next = torch.zeros_like(hs[0])
        for t in reversed(range(T)):
            dh = g_t[t] + dh_next
            if keep_t is not None:
                dh.mul_(keep_t[t])
            torch.mul(dh, to_pre_n_t[t], out=dpre_n_t[t])
            torch.mul(dpre_n_t[t], to_pre_r_t[t], out=dgh_r[t])
            torch.mul(dh, to_pre_z_t[t], out=dgh_z[t])
            torch.mul(dpre_n_t[t], r_t[t], out=dgh_n[t])
            dh_next = torch.addmm(dh.mul_(z_t[t]), dgh_t[t], weight_hh)
        dgi = torch.cat([dgh[..., :2 * H], dpre_n], dim=-1)
        flat = dgh.reshape(T * B, 3 * H)
        d_weight_hh = flat.t() @ hs[:-1].reshape(T * B, H)
        d_bias_hh = flat.sum(dim=0)
        return dgi, dh_next, d_weight_hh, d_bias_hh, None


def gru_sequence(gru: nn.GRU, x: torch.Tensor, h0: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Hidden states ``h_1..h_T`` ``(T, B, H)`` of a one-layer ``nn.GRU`` run over ``x (T, B, in)`` from ``h0 (B, H)``,
    with ``h_t`` multiplied by ``keep (T, B, 1)`` where given. Uses ``gru``'s parameters (their gradients too)."""
    if gru.num_layers != 1 or gru.bidirectional or gru.batch_first:
        raise ValueError("gru_sequence supports a single-layer, unidirectional, time-major nn.GRU")
    T, B = x.shape[:2]
    if T == 0:
        return x.new_zeros(0, B, gru.hidden_size)
    gi = torch.addmm(gru.bias_ih_l0, x.reshape(T * B, -1), gru.weight_ih_l0.t()).reshape(T, B, -1)
    if keep is not None:
        keep = keep.to(x.dtype).reshape(T, B, 1)
    return _GRURecurrence.apply(gi, h0, gru.weight_hh_l0, gru.bias_hh_l0, keep)
