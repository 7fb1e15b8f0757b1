import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# analysis reads only the tests' own hand-made runs, not the repository's shipped reference runs
os.environ.setdefault("METARL_SHIPPED_RESULTS", os.path.join(os.path.dirname(__file__), "no-shipped-results"))

import torch

torch.set_num_threads(1)
