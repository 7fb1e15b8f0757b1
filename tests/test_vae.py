"""VariBAD's ELBO: KL terms against the closed form, the decoding horizon, subsampling, masking."""

import numpy as np
import pytest
import torch

from algorithms.onpolicy.storage import TrajectoryBatch
from algorithms.varibad.config import VariBADConfig
from algorithms.varibad.vae import VAE, elbo_loss, horizon_mask, kl_terms


def closed_form_kl(mu1, logvar1, mu2, logvar2):
    """KL(N(mu1, diag e^logvar1) || N(mu2, diag e^logvar2)), written out by hand."""
    v1, v2 = np.exp(logvar1), np.exp(logvar2)
    return 0.5 * np.sum(logvar2 - logvar1 + (v1 + (mu1 - mu2) ** 2) / v2 - 1.0, axis=-1)


@pytest.fixture
def beliefs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, 4, generator=g), torch.randn(6, 3, 4, generator=g) * 0.5


def test_filtering_kl_matches_closed_form(beliefs):
    mean, logvar = beliefs
    kl = kl_terms(mean, logvar, "filtering").numpy()
    m, lv = mean.numpy(), logvar.numpy()
    np.testing.assert_allclose(kl[0], closed_form_kl(m[0], lv[0], 0.0, 0.0), rtol=1e-5)  # q_-1 = N(0, I)
    for t in range(1, 6):
        np.testing.assert_allclose(kl[t], closed_form_kl(m[t], lv[t], m[t - 1], lv[t - 1]), rtol=1e-5)


def test_gauss_prior_and_none_kl(beliefs):
    mean, logvar = beliefs
    kl = kl_terms(mean, logvar, "gauss_prior").numpy()
    np.testing.assert_allclose(kl, closed_form_kl(mean.numpy(), logvar.numpy(), 0.0, 0.0), rtol=1e-5)
    assert torch.all(kl_terms(mean, logvar, "none") == 0)


@pytest.mark.parametrize(("variant", "prev_gets_grad"), [("filtering", True), ("detached_prev", False)])
def test_kl_gradient_through_previous_posterior(beliefs, variant, prev_gets_grad):
    mean, logvar = (x.clone().requires_grad_(True) for x in beliefs)
    # only the t = 3 term: its gradient reaches q_2 iff the previous posterior is not detached
    kl_terms(mean, logvar, variant)[3].sum().backward()
    assert (mean.grad[2].abs().sum() > 0) == prev_gets_grad
    assert mean.grad[3].abs().sum() > 0


def test_horizon_masks():
    T, B = 4, 1
    t = torch.arange(T + 1)[:, None].expand(T + 1, B)
    j = torch.arange(T)[:, None].expand(T, B)
    past = horizon_mask(t, j, "past")[..., 0]
    future = horizon_mask(t, j, "future")[..., 0]
    nxt = horizon_mask(t, j, "next")[..., 0]
    assert past[0].sum() == 0 and past[T].all() and past[2].tolist() == [True, True, False, False]
    assert future[0].all() and future[T].sum() == 0 and future[2].tolist() == [False, False, True, True]
    assert nxt[2].tolist() == [False, False, True, False]
    assert torch.equal(past | future, torch.ones_like(past))
    assert horizon_mask(t, j, "all").all()


def gridworld_batch(T=20, B=3, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 5, size=(T, B, 2)).astype(np.float32)
    next_obs = torch.from_numpy(np.concatenate([xy, np.zeros((T, B, 1), np.float32)], -1))
    rewards = torch.full((T, B, 1), -0.1)
    actions = torch.nn.functional.one_hot(torch.from_numpy(rng.integers(0, 5, (T, B))), 5).float()
    idx = torch.from_numpy((xy[..., 0] * 5 + xy[..., 1]).astype(np.int64))
    return TrajectoryBatch(prev_obs=torch.zeros_like(next_obs), actions=actions, rewards=rewards,
                           next_obs=next_obs, state_index=idx, tasks=torch.zeros(B, 2),
                           lengths=torch.full((B,), T))


def make_vae(**overrides):
    cfg = VariBADConfig(**overrides)
    torch.manual_seed(0)
    return cfg, VAE(cfg, obs_dim=3, action_dim=5, task_dim=2, num_states=25)


@pytest.mark.parametrize(("horizon", "changes"), [("all", True), ("future", True), ("past", False)])
def test_future_decoding_is_real(horizon, changes):
    """Changing transition 15 changes the decoding loss of ELBO_2 iff the horizon decodes the future."""
    cfg, vae = make_vae(decode_horizon=horizon)
    batch = gridworld_batch()
    base = elbo_loss(vae, batch, cfg, deterministic_latent=True)
    batch.rewards[15, 0, 0] = 1.0  # the goal was found at step 15 in trajectory 0
    changed = elbo_loss(vae, batch, cfg, deterministic_latent=True)
    diff = (changed.rec_reward[2, 0] - base.rec_reward[2, 0]).abs().item()
    assert (diff > 1e-6) == changes
    # ELBO_t with t > 15 has seen transition 15 in every variant except 'future', which must ignore it
    if horizon == "past":
        assert (changed.rec_reward[16, 0] - base.rec_reward[16, 0]).abs().item() > 1e-6
    # other trajectories are untouched
    assert torch.allclose(changed.rec_reward[:, 1:], base.rec_reward[:, 1:])


def test_loss_sums_elbo_terms_averages_reconstruction_and_sums_kl_over_trajectories():
    """The reference's reduction (vae.py: reconstruction ``.mean()`` over trajectories, ``kl_loss.sum(dim=0)
    .mean()``): kl_weight acts per trajectory of the batch."""
    cfg, vae = make_vae()
    assert cfg.vae_batch_reduction == "reference"
    batch = gridworld_batch()
    out = elbo_loss(vae, batch, cfg, deterministic_latent=True)
    expected = out.rec_reward.sum(0).mean() + cfg.kl_weight * out.kl.sum(0).sum()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out.rec_reward.shape == (21, 3) and out.kl.shape == (21, 3)
    cfg_mean, _ = make_vae(vae_batch_reduction="mean")
    out_mean = elbo_loss(vae, batch, cfg_mean, deterministic_latent=True)
    expected_mean = (out.rec_reward.sum(0) + cfg.kl_weight * out.kl.sum(0)).mean()
    assert out_mean.loss.item() == pytest.approx(expected_mean.item(), rel=1e-6)


@pytest.mark.parametrize("reduction", ["reference", "mean"])
def test_kl_term_grows_with_the_batch_and_reconstruction_does_not(reduction):
    """B copies of one trajectory: the same per-trajectory terms; under ``reference`` the KL part of the loss
    is B times one trajectory's, the reconstruction part stays one trajectory's."""
    one = gridworld_batch(B=1)

    def time_major(x):
        return x.repeat(1, B, *[1] * (x.dim() - 2))

    parts = {}
    for B in (1, 4):
        batch = TrajectoryBatch(prev_obs=time_major(one.prev_obs), actions=time_major(one.actions),
                                rewards=time_major(one.rewards), next_obs=time_major(one.next_obs),
                                state_index=time_major(one.state_index), tasks=one.tasks.repeat(B, 1),
                                lengths=one.lengths.repeat(B))
        for kl_weight, rew_coeff in ((1.0, 0.0), (0.0, 1.0)):
            cfg, vae = make_vae(vae_batch_reduction=reduction, kl_weight=kl_weight, rew_loss_coeff=rew_coeff)
            loss = elbo_loss(vae, batch, cfg, deterministic_latent=True).loss.item()
            parts[(B, "kl" if kl_weight else "rec")] = loss
    assert parts[(1, "kl")] > 0 and parts[(1, "rec")] > 0
    assert parts[(4, "rec")] == pytest.approx(parts[(1, "rec")], rel=1e-5)
    factor = 4 if reduction == "reference" else 1
    assert parts[(4, "kl")] == pytest.approx(factor * parts[(1, "kl")], rel=1e-5)


def test_padding_beyond_length_is_ignored():
    cfg, vae = make_vae()
    batch = gridworld_batch()
    batch.lengths = torch.tensor([20, 12, 20])
    base = elbo_loss(vae, batch, cfg, deterministic_latent=True)
    batch.rewards[15, 1, 0] = 1.0  # beyond trajectory 1's end: must not matter
    batch.next_obs[15:, 1] = 4.0
    changed = elbo_loss(vae, batch, cfg, deterministic_latent=True)
    assert torch.allclose(base.loss, changed.loss)
    assert (base.rec_reward[13:, 1] == 0).all() and (base.kl[13:, 1] == 0).all()


def test_subsampling_shapes_and_mse_decoder():
    cfg, vae = make_vae(reward_decoder="mse", subsample_elbos=5, subsample_decodes=7, decode_state=True,
                        decode_task=True)
    out = elbo_loss(vae, gridworld_batch(), cfg)
    assert out.rec_reward.shape == (5, 3) and out.elbo_times.shape == (5, 3)
    assert out.elbo_times.max() <= 20 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in vae.reward_decoder.parameters())
    assert all(p.grad is not None for p in vae.state_decoder.parameters())


def test_tbptt_matches_full_backprop_in_forward():
    _, vae = make_vae()
    batch = gridworld_batch()
    full = vae.encoder.encode_trajectories(batch.actions, batch.rewards, batch.next_obs)
    trunc = vae.encoder.encode_trajectories(batch.actions, batch.rewards, batch.next_obs, tbptt=6)
    assert torch.allclose(full[0], trunc[0], atol=1e-6)


def test_online_step_matches_sequence_encoding():
    """The GRU cell used while acting and nn.GRU used for the VAE give the same beliefs."""
    _, vae = make_vae()
    batch = gridworld_batch()
    enc = vae.encoder
    seq_mean, _ = enc.encode_trajectories(batch.actions, batch.rewards, batch.next_obs)
    h = enc.initial_hidden(3)
    for t in range(20):
        h = enc.step(batch.actions[t], batch.rewards[t], batch.next_obs[t], h)
    assert torch.allclose(enc.head(h)[0], seq_mean[20], atol=1e-5)


@pytest.mark.parametrize("prev_state,action", [(False, False), (True, True)])
def test_pairwise_decoding_equals_decoding_the_expanded_pairs(prev_state, action):
    """The factorised first layer (decode_pairs) is the same function as the plain decoder on every pair."""
    from algorithms.varibad.networks import RewardDecoder, StateDecoder

    torch.manual_seed(0)
    n, D, B, L, obs, act = 7, 6, 3, 5, 4, 2
    latent, next_obs = torch.randn(n, B, L), torch.randn(D, B, obs)
    prev_obs, actions = torch.randn(D, B, obs), torch.randn(D, B, act)
    reward = RewardDecoder(L, obs, act, 8, 4, [16, 8], prev_state, action)

    def expand(x: torch.Tensor) -> torch.Tensor:
        return x[None].expand(n, *x.shape)

    lat = latent[:, None].expand(n, D, B, L)
    torch.testing.assert_close(reward.forward_pairs(latent, next_obs, prev_obs, actions),
                               reward(lat, expand(next_obs), expand(prev_obs), expand(actions)))
    state = StateDecoder(L, obs, act, 8, 4, [16, 8])
    torch.testing.assert_close(state.forward_pairs(latent, prev_obs, actions),
                               state(lat, expand(prev_obs), expand(actions)))


@pytest.mark.parametrize("horizon", ["all", "past"])
def test_blocked_decoding_gives_the_one_pass_loss_and_gradients(monkeypatch, horizon):
    """The ELBO decodes its (term, transition) pairs a block of ELBO terms at a time; the loss and every gradient
    equal those of a single pass over all pairs, also with blocks that do not divide the number of terms."""
    from algorithms.varibad import vae as vae_module

    cfg, vae = make_vae(reward_decoder="mse", decode_state=True, decode_horizon=horizon)
    batch = gridworld_batch()
    batch.lengths = torch.tensor([20, 13, 17])

    def loss_and_grads(block_entries: int):
        monkeypatch.setattr(vae_module, "PAIR_BLOCK_ENTRIES", block_entries)
        vae.zero_grad(set_to_none=True)
        out = elbo_loss(vae, batch, cfg, deterministic_latent=True)
        out.loss.backward()
        return out, [p.grad.clone() for p in vae.parameters() if p.grad is not None]

    one_pass, one_pass_grads = loss_and_grads(1 << 30)
    # reward decoder width 32 (x 20 x 3 per ELBO term): 3 terms per block, 21 terms -> 7 blocks; width-1 blocks too
    for entries in (3 * 20 * 3 * 32, 1):
        blocked, blocked_grads = loss_and_grads(entries)
        torch.testing.assert_close(blocked.loss, one_pass.loss)
        torch.testing.assert_close(blocked.rec_reward, one_pass.rec_reward)
        torch.testing.assert_close(blocked.rec_state, one_pass.rec_state)
        assert len(blocked_grads) == len(one_pass_grads) > 0
        for got, want in zip(blocked_grads, one_pass_grads, strict=True):  # float32 sums in another order
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * float(want.abs().max()))
    assert one_pass.rec_reward.abs().sum() > 0 and one_pass.rec_state.abs().sum() > 0


@pytest.mark.parametrize("horizon", ["all", "past"])
def test_subsampled_decodes_are_drawn_per_elbo_term_and_decoded_as_drawn(monkeypatch, horizon):
    """The reference draws the decoded transitions separately for every ELBO term (vae.py, ``indices1``); the
    loss then decodes exactly those: checked against a loop over (term, draw) with the decoders' forward()."""
    import algorithms.varibad.vae as vae_module

    cfg, vae = make_vae(reward_decoder="mse", subsample_elbos=4, subsample_decodes=6, decode_state=True,
                        decode_horizon=horizon)
    batch = gridworld_batch()
    batch.rewards = torch.randn_like(batch.rewards)
    draws = []
    real = vae_module._sample_times

    def spy(upper, n):
        times = real(upper, n)
        draws.append(times)
        return times

    monkeypatch.setattr(vae_module, "_sample_times", spy)
    torch.manual_seed(3)
    out = elbo_loss(vae, batch, cfg, deterministic_latent=True)
    elbo_times, decode = draws[0], draws[1].reshape(4, 6, 3)
    assert draws[1].shape == (4 * 6, 3)  # one draw per (ELBO term, decode, trajectory)
    assert any(not torch.equal(decode[0, :, b], decode[i, :, b]) for i in range(1, 4) for b in range(3))
    mean, _ = vae.encoder.encode_trajectories(batch.actions, batch.rewards, batch.next_obs, cfg.tbptt)
    with torch.no_grad():
        for i in range(4):
            for b in range(3):
                t = int(elbo_times[i, b])
                m = mean[t, b]
                rew = state = 0.0
                for j in decode[i, :, b].tolist():
                    if horizon == "past" and not j < t:
                        continue
                    r_hat = vae.reward_decoder(m[None], batch.next_obs[j, b][None], batch.prev_obs[j, b][None],
                                               batch.actions[j, b][None])
                    rew += float((r_hat - batch.rewards[j, b, 0]).pow(2))
                    s_hat = vae.state_decoder(m[None], batch.prev_obs[j, b][None], batch.actions[j, b][None])
                    state += float((s_hat - batch.next_obs[j, b]).pow(2).mean())
                assert out.rec_reward[i, b].item() == pytest.approx(rew, rel=1e-5, abs=1e-6)
                assert out.rec_state[i, b].item() == pytest.approx(state, rel=1e-5, abs=1e-6)


def test_reward_decoder_embeds_both_states_with_one_encoder():
    """The reference's reward decoder has one ``state_encoder`` for s and s' (models/decoder.py)."""
    from algorithms.varibad.networks import RewardDecoder

    decoder = RewardDecoder(2, 3, 2, 4, 0, [8], input_prev_state=True, input_action=False)
    embeddings = [m for m in decoder.modules() if isinstance(m, torch.nn.Linear) and m.in_features == 3]
    assert len(embeddings) == 1
    s, s2 = torch.randn(5, 3), torch.randn(5, 3)
    features = decoder.transition_features(s2, s, torch.zeros(5, 2))
    torch.testing.assert_close(features, torch.cat([decoder.state_embed(s2), decoder.state_embed(s)], -1))
