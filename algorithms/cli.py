"""The training command line checked before Hydra runs anything: a misspelt key, a missing group option or a bad
value gives one line (with the nearest keys or options) and exit code 2, never Hydra's traceback and config-search-path
report, and never a results folder."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from algorithms import configs  # noqa: F401 - registers the structured configs Hydra composes with
from algorithms.common.errors import ConfigError
from algorithms.common.run_checks import all_keys, check_run_config, explain_composition_error
from records.locations import CONF_DIR

#: command-line flags after which Hydra only prints or does something other than a run: nothing to check
HYDRA_INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve", "--shell-completion",
                    "-sc", "--version")


def _groups() -> dict[str, list[str]]:
    conf = Path(CONF_DIR)
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in conf.iterdir() if d.is_dir()}


def one_job(args: list[str]) -> list[str]:
    """The overrides of one job of the command (the first value of every sweep), without Hydra's own settings."""
    overrides = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
    concrete = []
    for override in overrides:
        if override.is_hydra_override():
            continue
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()))
            concrete.append(f"{override.get_key_element()}={first}")
        else:
            concrete.append(override.input_line)
    return concrete


def check_command_line(args: list[str]) -> str | None:
    """What is wrong with a ``train.py`` command line, as one line, or ``None``. Composes the config of its first job
    exactly as Hydra would (the others are checked by each job before it starts)."""
    if any(a in HYDRA_INFO_FLAGS or a.startswith("--cfg") for a in args):
        return None
    try:
        overrides = one_job(args)
    except HydraException as exc:
        return f"cannot read the command line: {str(exc).splitlines()[0]}"
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            try:
                cfg = compose(config_name="config", overrides=overrides)
            except (HydraException, OmegaConfBaseException) as exc:
                # the keys that exist for the chosen groups (algo=pearl has other keys than varibad)
                groups = [o for o in overrides if "." not in o.split("=", 1)[0] and not o.startswith("+")]
                try:
                    defaults = compose(config_name="config", overrides=groups)
                except (HydraException, OmegaConfBaseException):
                    defaults = compose(config_name="config")
                message = "\n".join(str(e) for e in (exc, exc.__cause__) if e is not None)
                return explain_composition_error(message, all_keys(OmegaConf.to_container(defaults)), _groups())
    finally:
        GlobalHydra.instance().clear()
    try:
        check_run_config(cfg)
    except ConfigError as exc:
        return str(exc)
    return None
