"""uvicorn servers run as a task inside an event loop that someone else owns."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn


class InLoopServer(uvicorn.Server):
    """A uvicorn server that leaves SIGINT and SIGTERM to the process hosting it.

    Since uvicorn 0.29, ``Server.serve`` swaps the process's SIGINT/SIGTERM
    handlers for its own while it runs and raises any captured signal again once
    it has stopped (``install_signal_handlers`` is gone). A server that is one
    part of a larger process (the analyzer's health endpoint, a test's servers)
    must not take the host's signals: the host decides what a signal means and
    stops the server itself (``should_exit``).
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: the host process owns its signal handlers."""
        yield
