"""Print the sbatch script that ``launcher=slurm`` would submit, composed here without a cluster.

    python -m launch.slurm_script algo=varibad env=gridworld seed=0,1,2 hydra.launcher.partition=gpu
    make slurm-script ALGO=varibad ENV=gridworld SEEDS=0,1,2 ARGS="hydra.launcher.partition=gpu"

The arguments are those of ``python train.py --multirun launcher=slurm ...`` (``launcher=slurm`` is added unless
another ``launcher=`` is given). The config is composed as ``--multirun`` composes it, the sweep is expanded by
Hydra's basic sweeper (one Slurm array task per run), and the launcher's fields are mapped exactly as
hydra-submitit-launcher maps them and rendered by submitit's own Slurm executor: the text is what submitit would
write to ``<sweep dir>/.submitit/`` and pass to ``sbatch``. The script goes to stdout, the array tasks to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from unittest import mock

from hydra import initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from algorithms import configs  # noqa: F401 - registers the structured configs Hydra composes with
from records import locations
from records.command_line import command_line

CONF_DIR = str(locations.CONF_DIR)
JOB_NAME = "train"  # hydra.job.name of `python train.py` (the Slurm job name)
SLURM_TARGET = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


def compose_sweep_config(*overrides: str) -> DictConfig:
    """The full config (``hydra`` node included) that ``python train.py --multirun <overrides>`` starts from."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name=JOB_NAME):
        hydra = GlobalHydra.instance().hydra
        assert hydra is not None
        return hydra.compose_config("config", list(overrides), run_mode=RunMode.MULTIRUN, from_shell=False)


def sweep_jobs(cfg: DictConfig) -> list[list[list[str]]]:
    """The overrides of every run, in the batches the launcher receives them (BasicSweeper.sweep's expansion)."""
    params = [f"{key}={value}" for key, value in (cfg.hydra.sweeper.get("params") or {}).items()]
    arguments = params + list(cfg.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(arguments)
    return BasicSweeper.split_arguments(parsed, cfg.hydra.sweeper.get("max_batch_size"))


def render_sbatch(cfg: DictConfig, num_jobs: int) -> str:
    """The sbatch script submitit writes for ``num_jobs`` runs launched with ``cfg.hydra.launcher``."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from submitit.slurm.slurm import SlurmExecutor

    fields = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert isinstance(fields, dict)
    target = fields.pop("_target_", None)
    if target != SLURM_TARGET:
        raise ValueError(f"the launcher is {target}, not the Slurm launcher ({SLURM_TARGET})")
    # hydra_submitit_launcher's BaseSubmititLauncher.launch: executor arguments, then prefixed Slurm parameters
    folder = fields.pop("submitit_folder")
    max_num_timeout = fields.pop("max_num_timeout")
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    params = {key if key in generic else f"slurm_{key}": value for key, value in fields.items()}
    # The executor refuses to start where there is no `srun`; rendering the script needs no cluster.
    with mock.patch.object(SlurmExecutor, "affinity", classmethod(lambda cls: 2)):
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=max_num_timeout)
    executor.update_parameters(**params)
    slurm = executor._executor
    assert isinstance(slurm, SlurmExecutor)
    if num_jobs > 1:  # map_array submits a job array, one task per run (SlurmExecutor._internal_process_submissions)
        slurm.parameters["map_count"] = num_jobs
    return slurm._make_submission_file_text(slurm._submitit_command_str, uid="render")


def main(argv: Sequence[str] | None = None) -> None:
    parser = command_line(__doc__, prog="python -m launch.slurm_script")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for `python train.py --multirun`")
    overrides = list(parser.parse_args(argv).overrides)
    if not any(o.lstrip("+~").startswith("launcher=") for o in overrides):
        overrides.insert(0, "launcher=slurm")
    cfg = compose_sweep_config(*overrides)
    batches = sweep_jobs(cfg)
    jobs = batches[0]
    print(render_sbatch(cfg, len(jobs)))
    for index, job in enumerate(jobs):
        print(f"# array task {index}: {' '.join(job)}", file=sys.stderr)
    if len(batches) > 1:
        print(f"# (the first of {len(batches)} arrays: hydra.sweeper.max_batch_size)", file=sys.stderr)


if __name__ == "__main__":
    main()
