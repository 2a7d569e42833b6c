"""Runs work that can crash the process (a runtime opening a new graph, an engine build) in a child process,
so that a segfault, an abort or an OOM kill there becomes a named failure of one variant instead of the end
of the run.

Why a child and not a try/except: a crash in native code (ONNX Runtime's graph optimiser, TensorRT's builder)
is a signal, not an exception, and it takes every stage already computed in the process down with it. Measured
(notes/measured-2026-12-01.md and this repo's tests/test_contain.py): ONNX Runtime 1.32 dies with SIGSEGV
while it creates a session for the fp16 graph of a `torch.nn.TransformerEncoder(norm_first=True)` at its
default optimisation level, on the VNNI and AMX kinds.

The child is a fresh interpreter (`python -m mmcompress.runtimes.contain`; a fork would copy PyTorch's OpenMP
threads and locks, and multiprocessing's spawn would re-run the caller's script, which a user's script calling
mmcompress.run without a `__main__` guard must not see); it gets the caller's sys.path, talks over a pipe of its
own (not stdout, where native libraries print), imports only what the work needs, and serves every call of the
process until it dies, when the next call starts another.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
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


_worker: tuple | None = None  # (process, its answers, its requests): one child serves every call until it dies


def _connection():
    global _worker
    if _worker is None or _worker[0].poll() is not None:
        from multiprocessing.connection import Connection

        down_r, down_w = os.pipe()  # parent -> child
        up_r, up_w = os.pipe()      # child -> parent
        proc = subprocess.Popen([sys.executable, "-m", "mmcompress.runtimes.contain", str(down_r), str(up_w)],
                                pass_fds=(down_r, up_w), stdin=subprocess.DEVNULL, close_fds=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        os.close(down_r)
        os.close(up_w)  # the child holds the only other ends: EOF here means it is gone
        _worker = (proc, Connection(up_r, writable=False), Connection(down_w, readable=False))
    return _worker


def _discard() -> int | None:
    """Forget the worker (it died, or is stuck: killed); -> its exit code (negative: the signal)."""
    global _worker
    proc, up, down = _worker
    _worker = None
    try:
        code = proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    up.close()
    down.close()
    return code


def contained(fn: Callable, *args: Any, what: str, runtime: str | None = None, timeout_s: float | None = None,
              **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in a child process -> its (picklable) result. fn must be importable by name (a
    module-level function). An exception in the child is raised here (a StageError carrying the child's
    traceback if it does not pickle); a child that dies without answering raises RuntimeCrash naming `what`,
    the signal and `runtime`, and the next call starts a new child.

    One child serves every call of this process while it lives (spawned once, ~0.2 s, plus the imports its
    work needs), so probing each new graph costs the session's own creation and little more."""
    proc, up, down = _connection()
    try:
        down.send((fn, args, kwargs))
        message = up.recv() if up.poll(timeout_s) else "timeout"
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


if __name__ == "__main__":  # the worker: python -m mmcompress.runtimes.contain DOWN_FD UP_FD
    from multiprocessing.connection import Connection

    class _Duplex:  # _serve's one connection, over the two pipes
        def __init__(self, down: int, up: int):
            self._in, self._out = Connection(down, writable=False), Connection(up, readable=False)

        def recv(self):
            return self._in.recv()

        def send(self, obj):
            self._out.send(obj)

    _serve(_Duplex(int(sys.argv[1]), int(sys.argv[2])))
