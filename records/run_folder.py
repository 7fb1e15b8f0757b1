"""The run folder, ``<results_dir>/<env>/<label>/<run-id>/`` (design.md §5): the files, columns and statuses that
``algorithms.common.results`` writes and ``analysis.load`` / ``launch.reproduce`` read.

* ``config.yaml``: the fully resolved Hydra config;
* ``metadata.json``: run id, env, algo, label (the name analysis groups by; default the algo), seed, git commit,
  package versions, start/end time, status (``running`` -> ``completed`` | ``preempted`` | ``failed``), frames;
* ``train_metrics.csv``: one row per logged iteration: ``frames``, ``wall_time``, ``fps`` and metric columns;
* ``eval.csv``: one row per meta-test (frames, task, episode), columns :data:`EVAL_COLUMNS`;
* ``final_eval.csv`` (with ``eval.final_episodes``): the same columns, one more meta-test after the last one, with
  more episodes per task;
* ``beliefs_goal<x>_<y>.npz`` (optional, :data:`BELIEF_TRACES`): the belief along one GridWorld rollout;
* ``checkpoints/``: ``latest.pt`` (everything needed to resume) and, once completed, ``final.pt`` (the model);
* ``.lock``: held by the live training process (released by the OS even on SIGKILL).
"""

from __future__ import annotations

SCHEMA_VERSION = 1

CONFIG = "config.yaml"
METADATA = "metadata.json"
TRAIN_METRICS = "train_metrics.csv"
EVAL = "eval.csv"
FINAL_EVAL = "final_eval.csv"
CHECKPOINTS = "checkpoints"
LOCK = ".lock"
#: belief traces along one GridWorld rollout (``python -m tools.export_beliefs``), published with the run
BELIEF_TRACES = "beliefs_goal*.npz"
#: a progress snapshot's resume point (``launch.resume_point``): the file, its record under the snapshot's
#: ``metadata.json["snapshot"]``, and a restored run's record of each restore
RESUME_POINT = "resume.pt"
SNAPSHOT_RESUME_POINT = "resume_point"
RESTORED_FROM_SNAPSHOT = "restored_from_snapshot"
#: any folder holding one of these is a run folder
RUN_FILES = (METADATA, EVAL, TRAIN_METRICS, CONFIG)

#: eval.csv (and final_eval.csv) column -> kind ("string", "integer", "number", "bool"), in file order
EVAL_COLUMNS: dict[str, str] = {"run_id": "string", "frames": "integer", "task_id": "integer", "task": "string",
                                "episode": "integer", "return": "number", "success": "bool",
                                "steps_to_success": "number"}
#: the only eval columns that may be empty (no success in the episode)
NULLABLE_EVAL_COLUMNS = frozenset({"steps_to_success"})

RUNNING, PREEMPTED, COMPLETED, FAILED = "running", "preempted", "completed", "failed"
STATUSES = (RUNNING, PREEMPTED, COMPLETED, FAILED)
#: statuses of a run that can be resumed (``running`` only when no live process holds its lock)
RESUMABLE = (RUNNING, PREEMPTED)
#: metadata.json keys every run has, with their types
REQUIRED_METADATA: dict[str, type] = {"schema_version": int, "run_id": str, "env": str, "algo": str, "seed": int,
                                      "status": str}
