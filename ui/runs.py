"""Running model work for the UI: progress, Stop, and errors as messages.

Gradio's own ``cancels=`` drops a queued event and stops waiting for a running one, but it
cannot stop a thread that is inside a diffusion loop. So every run also gets a stop flag keyed
by the browser session; the Studio's per-step callback checks it and raises
:class:`~layerstudio.errors.Cancelled`, which ends the loop at the next step.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from layerstudio.errors import Cancelled, LayerStudioError

__all__ = ["StopFlags", "friendly", "wire_stop"]

log = logging.getLogger("layerstudio.ui")

Handler = TypeVar("Handler", bound=Callable[..., Any])


def friendly(handler: Handler) -> Handler:
    """Show a failure as a message in the page, never as a traceback: LayerStudio's own
    errors with their text, anything else as a short note (the traceback goes to the log)."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except LayerStudioError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:
            log.exception("unexpected failure in %s", handler.__name__)
            raise gr.Error(f"unexpected failure ({type(exc).__name__}); the server log has "
                           "the details", print_exception=False) from None

    return wrapper  # type: ignore[return-value]


class StopFlags:
    """One stop flag per browser session, for the run that session has going."""

    def __init__(self) -> None:
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, session: str) -> threading.Event:
        """A fresh flag for a new run of ``session`` (an earlier Stop does not carry over)."""
        flag = threading.Event()
        with self._lock:
            self._flags[session] = flag
        return flag

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

    def step_callback(self, flag: threading.Event, progress: Callable[..., Any],
                      what: str) -> Callable[[int, int], None]:
        """A Studio ``on_step`` that moves the progress bar and honours Stop."""

        def on_step(done: int, total: int) -> None:
            if flag.is_set():
                raise Cancelled(f"{what} stopped at step {done} of {total}")
            progress((done, total), desc=what, unit="steps")

        return on_step


def wire_stop(button: gr.Button, flags: StopFlags, runs: list[Any]) -> None:
    """Make ``button`` stop this session's run: queued events are dropped by Gradio, a running
    diffusion loop ends at its next step through the session's flag."""

    def stop(request: gr.Request) -> None:
        if flags.stop(request.session_hash):
            gr.Info("Stopping after the current step")

    button.click(stop, None, None, cancels=runs, api_name=False, queue=False)
