"""The run framework every agent uses: the ``Agent`` interface, the trainer, the meta-test, checkpoints, the run
folder, tracking and the checks of a run's config."""
