"""Launching sweeps beyond this machine: ``python -m launch.slurm_script`` renders the Slurm job script.

The launchers themselves are Hydra config choices (``launcher=joblib|submitit_local|slurm|ray``, conf/launcher/).
"""
