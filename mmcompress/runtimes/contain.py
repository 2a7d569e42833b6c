"""Runs work that can crash the process (a runtime opening a new graph, an engine build) in a child process,
so that a segfault, an abort or an OOM kill there becomes a named failure of one variant instead of the end
of the run.

Why a child and not a try/except: a crash in native code (ONNX Runtime's graph optimiser, TensorRT's builder)
is a signal, not an exception, and it takes every stage already computed in the process down with it. Measured
(notes/measured-2026-12-01.md and this repo's tests/test_contain.py): ONNX Runtime 1.32 dies with SIGSEGV
while it creates a session for the fp16 graph of a `torch.nn.TransformerEncoder(norm_first=True)` at its
default optimisation level, on the VNNI and AMX kinds.

The child is started with 'spawn' (a fork would copy PyTorch's OpenMP threads and locks) and imports only what
the work needs; it serves every call of the process until it dies, when the next call starts another.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
from typing import Any, Callable

from mmcompress.errors import StageError


class RuntimeCrash(StageError):
    """A runtime killed its process (by a signal, or an exit without a result): the variant failed, the run goes
    on with the others. Exit code 3, like any stage failure."""

    def __init__(self, what: str, how: str, runtime: str | None = None):
        self.what, self.how, self.runtime = what, how, runtime
        on = f" ({runtime})" if runtime else ""
        super().__init__(f"{what}{on} crashed: {how}; the run went on without it")


def describe_exit(code: int | None) -> str:
    """'killed by SIGSEGV (signal 11)' for a negative exit code, 'exit code 134' otherwise."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {"SIGKILL": " (often the kernel's out-of-memory killer)", "SIGSEGV": " (a segmentation fault)",
                "SIGABRT": " (an abort in native code)", "SIGBUS": " (a bus error)"}.get(name, "")
        return f"killed by {name} (signal {-code}){hint}"
    return f"exit code {code} without a result"


def _serve(conn) -> None:
    """The worker: runs each (fn, args, kwargs) it is sent and answers ("ok", result) or ("error", exception,
    traceback text), until the parent closes the pipe."""
    import traceback

    while True:
        try:
            fn, args, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        try:
            answer = ("ok", fn(*args, **kwargs), None)
        except BaseException as e:  # sent back and raised in the parent
            answer = ("error", e, traceback.format_exc())
        try:
            conn.send(answer)
        except Exception:  # the result or the exception does not pickle: its text does
            conn.send(("error", None, traceback.format_exc() if answer[0] == "ok" else answer[2]))


_worker: tuple | None = None  # (process, connection): one child serves every call until it dies


def _connection():
    global _worker
    if _worker is None or not _worker[0].is_alive():
        ctx = mp.get_context("spawn")
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(theirs,), daemon=True, name="mmcompress-contain")
        proc.start()
        theirs.close()  # the child holds the only other end: EOF here means it is gone
        _worker = (proc, mine)
    return _worker


def _discard() -> int | None:
    """Forget the worker (it died, or is stuck: killed); -> its exit code."""
    global _worker
    proc, conn = _worker
    _worker = None
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    conn.close()
    return proc.exitcode


def contained(fn: Callable, *args: Any, what: str, runtime: str | None = None, timeout_s: float | None = None,
              **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in a child process -> its (picklable) result. fn must be importable by name (a
    module-level function). An exception in the child is raised here (a StageError carrying the child's
    traceback if it does not pickle); a child that dies without answering raises RuntimeCrash naming `what`,
    the signal and `runtime`, and the next call starts a new child.

    One child serves every call of this process while it lives (spawned once, ~0.2 s, plus the imports its
    work needs), so probing each new graph costs the session's own creation and little more."""
    proc, conn = _connection()
    try:
        conn.send((fn, args, kwargs))
        message = conn.recv() if conn.poll(timeout_s) else "timeout"
    except (EOFError, OSError, BrokenPipeError):
        message = None
    if message == "timeout":
        _discard()
        raise RuntimeCrash(what, f"no answer within {timeout_s:g} s (the child was killed)", runtime)
    if message is None:
        raise RuntimeCrash(what, describe_exit(_discard()), runtime)
    status, value, text = message
    if status == "ok":
        return value
    if value is not None:
        raise value
    raise StageError(f"{what} failed in its child process:\n{text}")
