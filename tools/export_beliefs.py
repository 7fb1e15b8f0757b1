"""Export a trained VariBAD's belief along one GridWorld rollout (for the paper's fig. 3 pictures).

Agent-side half of the belief pictures: it loads a run's checkpoint, rolls the deterministic policy out on one
goal for K episodes and writes ``beliefs_goal<x>_<y>.npz`` into the run folder. ``analysis/belief_pictures.py``
draws from that file alone (analysis imports no agent code).

    python -m tools.export_beliefs results/gridworld/varibad/<run-id> [--goal 3 4] [--episodes 4]

Saved arrays (T = K x H steps; index 0 of the belief arrays is the prior, before any step):
``positions (T+1, 2)`` (start, then each s'), ``actions (T,)``, ``rewards (T,)``, ``episode_index (T,)``,
``latent_mean / latent_logvar (T+1, latent)``, ``reward_prob (T+1, size, size)``: the decoder's
p(r = goal reward | cell) at the posterior MEAN latent, ``goal (2,)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from algorithms.builder import configure_process, load_run_agent
from algorithms.varibad.agent import VariBADAgent
from algorithms.varibad.networks import PerStateRewardDecoder
from envs.registry import get_spec, make_meta_env
from records.command_line import command_line


def load_agent(run_dir: Path, checkpoint: str = "final") -> tuple[VariBADAgent, dict]:
    agent, cfg, progress = load_run_agent(run_dir, checkpoint)
    if not isinstance(agent, VariBADAgent) or not isinstance(agent.vae.reward_decoder, PerStateRewardDecoder):
        raise ValueError(f"{run_dir} is not a VariBAD run with a per-cell reward decoder")
    horizon = int(cfg.env.horizon or get_spec(cfg.env.name).horizon)
    return agent, {"frames": progress["frames"], "horizon": horizon}


@torch.no_grad()
def export(run_dir: Path, goal: tuple[int, int], episodes: int, checkpoint: str = "final") -> Path:
    agent, meta = load_agent(run_dir, checkpoint)
    env = make_meta_env("gridworld", num_envs=1, seed=0, split="test", episodes_per_task=episodes)
    size = env.inner.size
    obs, _ = env.reset(options={"tasks": np.array([goal], np.float32)})
    belief = agent.initial_belief(1)

    def snapshot(hidden: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean, logvar = agent.encoder.head(hidden)
        probs = torch.sigmoid(agent.vae.reward_decoder(mean))[0].numpy()  # cell id = x * size + y
        return mean[0].numpy(), logvar[0].numpy(), probs.reshape(size, size)

    prior = snapshot(belief.hidden)
    means, logvars, probs = [prior[0]], [prior[1]], [prior[2]]
    positions, actions, rewards, episode_index = [obs[0, :2].copy()], [], [], []
    for _ in range(episodes * env.horizon):
        action = agent.act(obs, belief, deterministic=True)
        next_obs, reward, _, _, info = env.step(action)
        belief = agent.update_belief(belief, obs, action, reward, info["final_obs"], info["episode_done"],
                                     np.zeros(1, dtype=bool))  # keep the belief for the picture's whole task
        m, lv, p = snapshot(belief.hidden)
        means.append(m)
        logvars.append(lv)
        probs.append(p)
        positions.append(info["final_obs"][0, :2].copy())
        actions.append(int(action[0]))
        rewards.append(float(reward[0]))
        episode_index.append(int(info["episode_index"][0]))
        obs = next_obs
    out = run_dir / f"beliefs_goal{goal[0]}_{goal[1]}.npz"
    np.savez(out, positions=np.array(positions), actions=np.array(actions), rewards=np.array(rewards),
             episode_index=np.array(episode_index), latent_mean=np.array(means), latent_logvar=np.array(logvars),
             reward_prob=np.array(probs), goal=np.array(goal), horizon=meta["horizon"], frames=meta["frames"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--goal", type=int, nargs=2, default=(3, 4), metavar=("X", "Y"))
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--checkpoint", default="final", help="checkpoint name under checkpoints/ (default: final)")
    args = parser.parse_args(argv)
    configure_process(1)
    print(f"wrote {export(args.run_dir, tuple(args.goal), args.episodes, args.checkpoint)}")


if __name__ == "__main__":
    main()
