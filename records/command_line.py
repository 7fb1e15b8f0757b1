"""The command-line contract every entry point keeps: bad input is one line on stderr that names the problem (and,
for a choice, what is allowed) and exit code 2 -- never argparse's usage block above it, never a traceback.

``train.py`` checks its Hydra command line the same way (``algorithms.cli``); this is the argparse side.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``<prog>: error: <message> (--help lists the options)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def command_line(doc: str | None, prog: str | None = None, whole_doc: bool = False) -> OneLineParser:
    """The parser of an entry point described by its module docstring ``doc``: its first paragraph, or all of it as
    written (``whole_doc``, for docstrings whose usage examples must keep their line breaks)."""
    if whole_doc:
        return OneLineParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    return OneLineParser(prog=prog, description=(doc or "").split("\n\n")[0].strip() or None)
