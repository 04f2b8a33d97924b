"""The project's error types: what the user can fix, as opposed to a bug.

`lightning-nas` turns a `UserError` into one line on stderr and exit code 2. Any other exception is
a bug: it keeps its traceback. Raise these on purpose, where the input is at fault; subclasses also
derive from the built-in type a caller would expect (`ConfigError` is a `ValueError`), so code that
catches the built-in type keeps working.
"""
from __future__ import annotations

import re


class UserError(Exception):
    """A problem with the user's input (config, file, argument): reported in one line, exit 2.
    The message says what was wrong, where, and what to do."""


class ConfigError(UserError, ValueError):
    """A value in a config, on the command line or in a table that cannot be used."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the user named (config, table, checkpoint) does not exist."""


class CapabilityError(UserError, ValueError):
    """A method needs something the search space does not provide (e.g. a network builder)."""


def one_line(message: str) -> str:
    """A multi-line error message as one line. jsonargparse reports a failed class init as a list of
    union alternatives: keep the cause, drop the alternatives."""
    noise = ("Does not validate", "Subtypes:", "Errors:", "Expected a <class 'NoneType'>", "Given value")
    lines = [re.sub(r"^- ", "", line.strip()) for line in message.splitlines() if line.strip()]  # "- " bullets, not "--option"
    useful = [line.rstrip(":") for line in lines if not line.startswith(noise)]
    return "; ".join(useful or lines[:1])
