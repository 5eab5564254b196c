"""Running model work for the UI: progress, Stop, and errors as messages.

A Stop must end a diffusion loop that is running in a worker thread, which Gradio's own
``cancels=`` cannot do (it only stops waiting for it, and marks every output with an error
badge). So each run has a stop flag keyed by the browser session: Generate first *arms* a flag
(an unqueued step, so Stop works while the run still waits in the queue), the run takes it, and
the Studio's per-step callback raises :class:`~layerstudio.errors.Cancelled` once it is set.
The run then returns the document unchanged with a "stopped" notice.

Failures are messages too: :func:`friendly` turns them into Gradio's error toast, and the
events show progress only on their own notice line (``show_progress_on``) or not at all, so an
error never covers the document with badges.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import gradio as gr

from layerstudio.errors import Cancelled, LayerStudioError

__all__ = ["StopFlags", "cancellable", "friendly", "wire_run"]

log = logging.getLogger("layerstudio.ui")

Handler = TypeVar("Handler", bound=Callable[..., Any])


def friendly(handler: Handler) -> Handler:
    """Show a failure as a message in the page, never as a traceback: LayerStudio's own
    errors with their text (server folders removed, file names kept), anything else as a short
    note (the traceback goes to the log). After a failure the memory a refused request took is
    handed back to the system, so one hostile upload does not leave the server large."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except LayerStudioError as exc:
            message = without_server_paths(str(exc))
        except Exception as exc:
            log.exception("unexpected failure in %s", handler.__name__)
            message = (f"unexpected failure ({type(exc).__name__}); the server log has the "
                       "details")
        release_memory()
        raise gr.Error(message, print_exception=False)

    return wrapper  # type: ignore[return-value]


def _server_folders() -> list[str]:
    roots = {tempfile.gettempdir(), os.environ.get("GRADIO_TEMP_DIR", "")}
    return sorted((os.path.realpath(root) for root in roots if root), key=len, reverse=True)


def without_server_paths(message: str) -> str:
    """``message`` with the server's temporary folders cut from any path in it: a user sees
    ``photo.psd``, not ``/tmp/gradio/3f2a.../photo.psd``."""
    for root in _server_folders():
        message = re.sub(re.escape(root) + r"/(?:[^/\s'\":]+/)*", "", message)
    return message


def release_memory() -> None:
    """Return freed heap pages to the operating system (glibc keeps them otherwise)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class StopFlags:
    """One stop flag per browser session, for the newest run that session started."""

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def arm(self, session: str) -> threading.Event:
        """A fresh flag for a run ``session`` is starting (an earlier Stop does not carry
        over)."""
        flag = threading.Event()
        with self._lock:
            self._flags[session] = flag
        return flag

    def take(self, session: str) -> threading.Event:
        """The flag armed for this run, or a fresh one (API clients call the run directly)."""
        with self._lock:
            flag = self._flags.get(session)
        return flag if flag is not None else self.arm(session)

    def stop(self, session: str) -> bool:
        """Ask ``session``'s run to stop; False when it has none going."""
        with self._lock:
            flag = self._flags.get(session)
        if flag is None or flag.is_set():
            return False
        flag.set()
        return True

    def finish(self, session: str, flag: threading.Event) -> None:
        """Forget ``flag`` once its run has ended (unless a newer run replaced it)."""
        with self._lock:
            if self._flags.get(session) is flag:
                del self._flags[session]

    @contextmanager
    def running(self, session: str, what: str) -> Iterator[threading.Event]:
        """Take the session's flag for a run, refuse to start if Stop came while it was
        queued, and forget the flag when the run ends."""
        flag = self.take(session)
        try:
            if flag.is_set():
                raise Cancelled(f"{what} stopped before it started")
            yield flag
        finally:
            self.finish(session, flag)

    @staticmethod
    def step_callback(flag: threading.Event, progress: Callable[..., Any],
                      what: str) -> Callable[[int, int], None]:
        """A Studio ``on_step`` that moves the progress bar and honours Stop (a total of 0:
        not known in advance)."""

        def on_step(done: int, total: int) -> None:
            if flag.is_set():
                raise Cancelled(f"{what} stopped at step {done} of {total}" if total > 0 else
                                f"{what} stopped after {done} steps")
            progress((done, total if total > 0 else None), desc=what, unit="steps")

        return on_step


def cancellable(flags: StopFlags, session: str, what: str, progress: Callable[..., Any],
                work: Callable[[Callable[[int, int], None]], str], unchanged: str) -> str:
    """Run ``work(on_step)`` as ``session``'s model run (progress bar, Stop) and return its
    message; when Stop ends it, the reason followed by ``unchanged`` (what was left as it
    was)."""
    try:
        with flags.running(session, what) as flag:
            return work(flags.step_callback(flag, progress, what))
    except Cancelled as exc:
        return f"{str(exc).capitalize()}; {unchanged}"


def wire_run(start: gr.Button, stop: gr.Button, flags: StopFlags, run: Callable[..., Any],
             inputs: list[Any], outputs: list[Any], notice: gr.Markdown, api_name: str,
             concurrency: int) -> None:
    """``start`` arms the session's flag, then queues ``run`` (at most ``concurrency`` model
    runs at once, shared by every model event) with its progress on ``notice``; ``stop``
    sets the flag."""

    def arm(request: gr.Request) -> None:
        flags.arm(request.session_hash)

    def stop_run(request: gr.Request) -> None:
        if flags.stop(request.session_hash):
            gr.Info("Stopping after the current step")

    start.click(arm, None, None, queue=False, api_name=False).then(
        run, inputs, outputs, api_name=api_name, concurrency_limit=concurrency,
        concurrency_id="model", show_progress_on=[notice])
    stop.click(stop_run, None, None, api_name=False)  # queued: its message needs the queue
