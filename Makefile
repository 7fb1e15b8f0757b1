# metarl-bench. Every target installs what it needs into .venv first (torch's CPU wheel before the rest).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ALGO ?= varibad
ENV ?= gridworld
SEEDS ?= 0,1,2
JOBS ?= 2
# niceness of the jobs of make sweep, make ablation and make reproduce (they share the cores with you)
NICE ?= 10
LAUNCHER ?= joblib
ARGS ?=
DEMO_FRAMES ?= 3000000

export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1
# A run stopped cleanly (Ctrl-C or SIGTERM: checkpointed, and the same command resumes it) exits 130 or 143: not an
# error of make's
CLEAN_STOP = || { code=$$?; [ $$code -eq 130 ] || [ $$code -eq 143 ] || exit $$code; }

.PHONY: install demo train sweep reproduce slurm-script test test-fast bench ablation plots tables report beliefs references metaworld-eval metaworld-compare status publish lint clean-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

## The main job on the small default: VariBAD on GridWorld, meta-tested on all 21 goals; prints the table.
demo: install
	$(BIN)/python train.py algo=varibad env=gridworld seed=0 train.num_frames=$(DEMO_FRAMES) \
		train.eval_interval_frames=1000000 $(ARGS) $(CLEAN_STOP)

train: install
	$(BIN)/python train.py algo=$(ALGO) env=$(ENV) $(ARGS) $(CLEAN_STOP)

## Seeds in parallel through Hydra multirun, one torch thread per job. LAUNCHER (conf/launcher/):
##   joblib          this machine, JOBS jobs at once (default)
##   submitit_local  this machine, every job at once in its own process (the Slurm code path, no cluster)
##   slurm           one Slurm job array (run on the login node; partition etc.: ARGS="hydra.launcher.partition=..")
##   ray             a local Ray instance with JOBS CPUs, 1 per job
## JOBS is how many jobs run at once on this machine: it sets the launchers that have such a setting.
LAUNCHER_JOBS_joblib = hydra.launcher.n_jobs=$(JOBS)
LAUNCHER_JOBS_ray = hydra.launcher.ray.init.num_cpus=$(JOBS)
LAUNCH = launcher=$(LAUNCHER) $(LAUNCHER_JOBS_$(LAUNCHER))
sweep: install
	nice -n $(NICE) $(BIN)/python train.py --multirun algo=$(ALGO) env=$(ENV) seed=$(SEEDS) $(LAUNCH) progress=false \
		$(ARGS) $(CLEAN_STOP)

## The sbatch script that `make sweep LAUNCHER=slurm` would submit (same ALGO/ENV/SEEDS/ARGS), without a cluster.
slurm-script: install
	$(BIN)/python -m launch.slurm_script algo=$(ALGO) env=$(ENV) seed=$(SEEDS) progress=false $(ARGS)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

## BENCH_BASELINE: the code GridWorld training is compared with in the same run: default HEAD (the committed code
## against the working tree's changes); BENCH_BASELINE=f2e1c69 measures against the code before the speed work
BENCH_BASELINE ?= HEAD
bench: install
	$(BIN)/python -m benchmarks.train_throughput --baseline $(BENCH_BASELINE) $(ARGS)
	$(BIN)/python -m benchmarks.vae_elbo
	$(BIN)/python -m benchmarks.pearl_throughput

## Figures and tables from whatever runs are in results/ (analysis/ reads files only).
plots: install
	$(BIN)/python -m analysis.plot_returns $(ARGS)

tables: install
	$(BIN)/python -m analysis.tables $(ARGS)

## One paper figure or table, resumable: starts what is missing, resumes what was stopped, publishes what completed,
## and writes the figure once every run is published (benchmarks/reproduce/<FIGURE>.yaml; report in
## results/reproduce/<FIGURE>/report/). PLAN=1: each run's state and hours left, nothing started. SNAPSHOT=1: publish
## the curves so far of unfinished runs. STOP=1: stop the campaign running in the background (every run checkpoints).
## LAUNCHER=local|slurm|ray, JOBS runs at once (local: each at niceness NICE, its session's autogroup too).
FIGURE ?= gridworld
REPRODUCE_LAUNCHER = $(if $(filter joblib,$(LAUNCHER)),local,$(LAUNCHER))
reproduce: install
	$(BIN)/python -m launch.reproduce $(FIGURE) --jobs $(JOBS) --launcher $(REPRODUCE_LAUNCHER) --nice $(NICE) \
		$(if $(PLAN),--plan) $(if $(SNAPSHOT),--snapshot) $(if $(STOP),--stop) $(ARGS) $(CLEAN_STOP)

## The paper's VariBAD ablations as named sweeps over seeds: NAME=decode_horizon|kl|latent_dim|rl_through_encoder
NAME ?= decode_horizon
ablation: install
	nice -n $(NICE) $(BIN)/python train.py --multirun algo=varibad env=$(ENV) +ablation=$(NAME) seed=$(SEEDS) \
		$(LAUNCH) progress=false $(ARGS) $(CLEAN_STOP)

## Publish finished runs as shipped reference results (benchmarks/results/, checkpoints left out) and re-index them:
## make publish RUN="results/gridworld/varibad/<run-id> results/gridworld/varibad/<run-id2>"
publish: install
	$(BIN)/python -m analysis.publish $(RUN) $(if $(RUN),,--index)

## Every run at a glance (state, progress, frames/s, ETA, last meta-test): make status [ARGS="--watch"]
status: install
	$(BIN)/python -m analysis.status $(ARGS)

## All figures and tables for the runs present, in results/report/ with an index.md.
report: install
	$(BIN)/python -m analysis.report $(ARGS)

## GridWorld belief pictures (paper fig. 3) for one run: make beliefs RUN=results/gridworld/varibad/<run-id>
beliefs: install
	$(BIN)/python -m tools.export_beliefs $(RUN) $(ARGS)
	$(BIN)/python -m analysis.belief_pictures $(RUN)

## Meta-World's own evaluation (metaworld.evaluation.metalearning_evaluation) of an ML1 run's final checkpoint,
## written next to its eval.csv: make metaworld-eval RUN=results/ml1_push/varibad/<run-id> [ARGS="--compare"]
metaworld-eval: install
	$(BIN)/python -m tools.metaworld_eval $(RUN) $(ARGS)

## Our ML1 evaluator vs Meta-World's vs a direct count, with Meta-World's scripted policy (goal visible, action
## noise NOISE): make metaworld-compare ENV=ml1_reach NOISE=2.0
NOISE ?= 2.0
metaworld-compare: install
	$(BIN)/python -m tools.metaworld_eval --scripted $(ENV) --noise $(NOISE) --compare $(ARGS)

## Recompute the reference values: GridWorld's exact optimal, Bayes-optimal and posterior sampling (returns and
## success rates); PointRobot's known-goal optimum and semicircle searcher (through the meta-test protocol);
## HalfCheetahVel's task-agnostic bound; the random policy's meta-test returns that end-of-run tables show (GridWorld
## and PointRobot's default meta-tests).
references: install
	$(BIN)/python -m algorithms.references.gridworld
	$(BIN)/python -m algorithms.references.pointrobot
	$(BIN)/python -m algorithms.references.cheetah_vel
	$(BIN)/python -m algorithms.references.random_policy

lint: install
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
