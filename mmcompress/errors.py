"""Errors a user can act on. Each class maps to one documented exit code (DESIGN.md, docs/cli.md)."""
from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_STAGE_FAILED = 3
EXIT_BACKEND_MISSING = 4


class MMCompressError(Exception):
    """Base class: the message is shown to the user as is, without a traceback."""

    exit_code = EXIT_STAGE_FAILED


class RecipeError(MMCompressError):
    """The recipe or the command line is wrong: the message names file, line, key path and the fix."""

    exit_code = EXIT_USAGE


class StageError(MMCompressError):
    """A stage ran and failed (export parity, quantizer crash, ...). Earlier stages' outputs are kept."""

    exit_code = EXIT_STAGE_FAILED


class BackendMissing(MMCompressError):
    """A package the recipe needs is not installed; the message says what to install."""

    exit_code = EXIT_BACKEND_MISSING
