"""The whole-sequence GRU with its hand-written backward against torch.nn.GRU and torch.autograd.gradcheck."""

import pytest
import torch
from torch import nn

from algorithms.onpolicy.gru import gru_sequence
from algorithms.onpolicy.recurrent import RecurrentEncoder


def gru_cell_loop(gru: nn.GRU, x: torch.Tensor, h0: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """The reference: one ``torch.gru_cell`` per step, ``h`` multiplied by ``keep[t]`` after step t."""
    h, out = h0, []
    for t in range(x.shape[0]):
        h = torch.gru_cell(x[t], h, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
        if keep is not None:
            h = h * keep[t]
        out.append(h)
    return torch.stack(out)


def grads(out: torch.Tensor, weights: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return torch.autograd.grad((out * weights).sum(), inputs)


@pytest.mark.parametrize("with_keep", [False, True])
def test_values_and_gradients_equal_torch_gru(with_keep):
    gen = torch.Generator().manual_seed(0)
    gru = nn.GRU(7, 12).double()
    x = torch.randn(23, 5, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    h0 = torch.randn(5, 12, dtype=torch.float64, generator=gen, requires_grad=True)
    keep = (torch.rand(23, 5, 1, generator=gen) > 0.2).double() if with_keep else None
    reference = gru_cell_loop(gru, x, h0, keep) if with_keep else gru(x, h0[None])[0]
    ours = gru_sequence(gru, x, h0, keep)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    weights = torch.randn(reference.shape, dtype=torch.float64, generator=gen)
    inputs = [x, h0, *gru.parameters()]
    for a, b in zip(grads(ours, weights, inputs), grads(reference, weights, inputs), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("with_keep", [False, True])
def test_gradcheck(with_keep):
    torch.manual_seed(1)
    gru = nn.GRU(3, 4).double()
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    keep = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]],
                        dtype=torch.float64)[..., None] if with_keep else None
    params = list(gru.parameters())
    # gradcheck perturbs the inputs it is given; the GRU's weights by central differences below
    assert torch.autograd.gradcheck(lambda x, h0: gru_sequence(gru, x, h0, keep), (x, h0))
    out = gru_sequence(gru, x, h0, keep)
    analytic = torch.autograd.grad(out.sum(), params)
    eps = 1e-6
    for p, g in zip(params, analytic, strict=True):
        flat = p.data.view(-1)
        for i in (0, flat.numel() // 2, flat.numel() - 1):
            old = flat[i].item()
            flat[i] = old + eps
            plus = gru_sequence(gru, x, h0, keep).sum().item()
            flat[i] = old - eps
            minus = gru_sequence(gru, x, h0, keep).sum().item()
            flat[i] = old
            assert abs((plus - minus) / (2 * eps) - g.view(-1)[i].item()) < 1e-6


def test_empty_sequence_and_single_layer_only():
    gru = nn.GRU(3, 4)
    assert gru_sequence(gru, torch.zeros(0, 2, 3), torch.zeros(2, 4)).shape == (0, 2, 4)
    with pytest.raises(ValueError, match="single-layer"):
        gru_sequence(nn.GRU(3, 4, num_layers=2), torch.zeros(5, 2, 3), torch.zeros(2, 4))


def test_encoder_with_resets_equals_the_step_by_step_rollout():
    torch.manual_seed(0)
    enc = RecurrentEncoder(obs_dim=2, action_dim=5, latent_dim=3, hidden_size=8, action_embed_dim=0,
                           state_embed_dim=4, reward_embed_dim=4)
    T, B = 9, 3
    actions, rewards, next_obs = torch.randn(T, B, 5), torch.randn(T, B, 1), torch.randn(T, B, 2)
    task_done = torch.zeros(T, B, dtype=torch.bool)
    task_done[3, 0] = task_done[5, 2] = True
    h0 = torch.randn(B, 8)
    hidden = enc.encode_with_resets(actions, rewards, next_obs, task_done, h0)
    h, expected = h0, [h0]
    for t in range(T - 1):
        h = enc.step(actions[t], rewards[t], next_obs[t], h) * (~task_done[t]).float()[:, None]
        expected.append(h)
    torch.testing.assert_close(hidden, torch.stack(expected), rtol=1e-5, atol=1e-6)
