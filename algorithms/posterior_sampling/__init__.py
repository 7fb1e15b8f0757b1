"""Posterior-sampling agents (VariBAD paper fig. 1, sec. 4).

* :class:`~algorithms.posterior_sampling.exact.ExactPosteriorSamplingAgent`: GridWorld with the true belief.
* learned posterior sampling: VariBAD's inference model, but the policy acts on a latent sampled from the current
  posterior once per episode and held fixed for that episode (``algo=posterior_sampling``; VariBAD config
  ``policy_belief: sample`` with ``belief_sample_hold: episode``). Same inference model as VariBAD, different use
  of the belief: the suite's direct Bayes-adaptive vs posterior-sampling comparison.
"""

from algorithms.posterior_sampling.exact import ExactPosteriorSamplingAgent

__all__ = ["ExactPosteriorSamplingAgent"]
