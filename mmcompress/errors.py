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


class DiskError(MMCompressError):
    """The disk is full, or a folder is not writable: the message names the path and the free space. Exit 3 for
    a full disk (the run can go on where it stopped once there is room), 2 for a folder the user cannot write."""


NO_SPACE = (28, 122)  # ENOSPC, EDQUOT
NOT_WRITABLE = (13, 1, 30)  # EACCES, EPERM, EROFS


def _free(path) -> str:
    import shutil
    from pathlib import Path

    p = Path(path).resolve() if path else Path.cwd()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return f"{shutil.disk_usage(p).free / 1e6:.1f} MB free on the disk of {p}"
    except OSError:
        return "free space unknown"


def os_problem(e: BaseException, where=None) -> DiskError | None:
    """A DiskError when `e` (or what caused it: exporters wrap their OSErrors) is a full disk or an unwritable
    path; else None. where: the folder being written, when the OSError does not name its file."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in NO_SPACE + NOT_WRITABLE:
            path = e.filename or where
            if e.errno in NO_SPACE:
                err = DiskError(f"{path or 'a file'}: no space left on the device ({_free(path)}); free some space "
                                f"(or pass --run-dir on a disk with room) and run again: finished stages are kept")
            else:
                err = DiskError(f"{path or 'a file'}: cannot write there ({e.strerror}); pass a writable --run-dir "
                                f"(or fix the folder's permissions)")
                err.exit_code = EXIT_USAGE
            return err
        e = e.__cause__ or e.__context__
    return None
