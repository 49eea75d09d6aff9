"""A real SMTP server (aiosmtpd) that records what it accepts and can misbehave on cue.

Its faults are those of real mail servers, at the protocol edge: answering 451 ("try
again later") to DATA, or holding DATA without an answer. A message counts as accepted,
as in SMTP, only when the server answered 250 to its DATA; a client that disconnects
while DATA is held (killed, timed out) has delivered nothing: aiosmtpd cancels the
handler then.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from devstack.servers import LOCALHOST


class RecordingHandler:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        # The client's (host, port) of each accepted message: one port, one session.
        self.peers: list[tuple[str, int]] = []
        self.refused = 0
        self.refuse_next = 0
        self.stall = False
        self.stalled = threading.Event()
        self.abandoned = threading.Event()
        self.release = threading.Event()
        # Called once a message is accepted, just before the server says so (the 250):
        # a fault injected there lands after the email is out, before the sender knows.
        self.on_accept: Callable[[], None] | None = None

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()
            self.peers.clear()
            self.refused = 0
            self.refuse_next = 0
            self.stall = False
            self.stalled.clear()
            self.abandoned.clear()
            self.release.clear()
            self.on_accept = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            refuse = self.refuse_next > 0
            if refuse:
                self.refuse_next -= 1
                self.refused += 1
        if refuse:
            return "451 4.3.0 Try again later"
        if self.stall:
            self.stalled.set()
            # Cancelled here if the client goes away: then nothing was accepted. A polled
            # threading.Event, because the test sets it from another thread.
            try:
                while not self.release.is_set():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            except asyncio.CancelledError:
                self.abandoned.set()
                raise
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
            self.peers.append((str(session.peer[0]), int(session.peer[1])))
            on_accept = self.on_accept
        if on_accept is not None:
            on_accept()
        return "250 2.0.0 OK"

    def accepted(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float) -> list[EmailMessage]:
        """Block until ``count`` messages were accepted (more is not an error here)."""
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.accepted())} of {count} emails after {timeout}s")
            time.sleep(0.05)
        return self.accepted()


class SmtpServer:
    def __init__(self, port: int) -> None:
        self.handler = RecordingHandler()
        self.host = LOCALHOST
        self.port = port
        self._controller = Controller(self.handler, hostname=LOCALHOST, port=port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
