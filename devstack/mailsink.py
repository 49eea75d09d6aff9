"""The local stack's SMTP sink: keeps every email as an ``.eml`` file and lists them on a
small read-only web page.

    python -m devstack.mailsink DIR --smtp-port 25025 --http-port 8025

aiosmtpd accepts anything (no auth, no TLS: it only listens on 127.0.0.1); each message
is written to ``DIR/<time>-<Message-ID>.eml`` (atomically: a reader never sees half a
file). The web page is the standard library's directory listing of ``DIR``, served as
plain text so a browser shows an email instead of downloading it.

``--hold-file F`` is for the fault drill: while ``F`` exists, the sink holds its answer
to each message's final dot — the moment a real server takes responsibility for it — and
lists the client ports it holds in ``F.held``. A client that dies meanwhile was never
told "250 OK", so its message is not kept, as a real server would not deliver it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from aiosmtpd.controller import Controller

from devstack.host import LOCALHOST, accepts_tcp

REPO = Path(__file__).resolve().parents[1]


class EmlWriter:
    """aiosmtpd handler: every accepted message becomes one ``.eml`` file."""

    def __init__(self, directory: Path, hold_file: Path | None = None) -> None:
        self.directory = directory
        self.hold_file = hold_file
        self._held: set[int] = set()
        self._count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hold_file is not None and self.hold_file.exists():
            # Cancelled by aiosmtpd if the client goes away meanwhile: nothing is kept.
            await self._hold(int(session.peer[1]))
        with self._lock:
            self._count += 1
            count = self._count
        match = re.search(rb"^Message-ID:\s*<?([^>\r\n]+)", envelope.content, re.M | re.I)
        label = re.sub(r"[^\w.@-]", "_", match.group(1).decode(errors="replace")) if match else ""
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{count:05d}-{label or 'message'}.eml"
        partial = self.directory / f".{name}.partial"
        partial.write_bytes(envelope.content)
        partial.rename(self.directory / name)
        return "250 2.0.0 OK: kept as " + name

    async def _hold(self, client_port: int) -> None:
        assert self.hold_file is not None
        self._held.add(client_port)
        self._list_held()
        try:
            while self.hold_file.exists():  # noqa: ASYNC110 (a file another process owns)
                await asyncio.sleep(0.005)
        finally:
            self._held.discard(client_port)
            self._list_held()

    def _list_held(self) -> None:
        assert self.hold_file is not None
        listing = self.hold_file.with_name(self.hold_file.name + ".held")
        partial = listing.with_name(listing.name + ".partial")
        partial.write_text("".join(f"{port}\n" for port in sorted(self._held)))
        with contextlib.suppress(OSError):
            partial.rename(listing)


class MailPage(SimpleHTTPRequestHandler):
    """GET/HEAD only (the base class has no write methods): the folder and its files."""

    # The base class documents overriding this mapping per subclass.
    extensions_map = {".eml": "text/plain; charset=utf-8", "": "application/octet-stream"}  # noqa: RUF012

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the access log of a local inbox is noise


@dataclass(frozen=True)
class MailSink:
    """The sink as a server of the stack (see ``servers.Server``)."""

    mail_dir: Path
    smtp_port: int
    http_port: int
    hold_file: Path | None = None

    name = "mail-sink"
    run_as = None
    stop_signal = signal.SIGTERM

    @property
    def workdir(self) -> Path:
        # It runs as `python -m devstack.mailsink`: from the repository root.
        return REPO

    def prepare(self) -> None:
        self.mail_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        hold = ["--hold-file", str(self.hold_file)] if self.hold_file is not None else []
        return [
            *(sys.executable, "-m", "devstack.mailsink", str(self.mail_dir)),
            *("--smtp-port", str(self.smtp_port), "--http-port", str(self.http_port)),
            *hold,
        ]

    def is_ready(self) -> bool:
        return accepts_tcp(self.smtp_port) and accepts_tcp(self.http_port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.mailsink")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--hold-file", type=Path, help="hold answers while this file exists")
    args = parser.parse_args(argv)
    args.directory.mkdir(parents=True, exist_ok=True)

    writer = EmlWriter(args.directory, args.hold_file)
    smtp = Controller(writer, hostname=LOCALHOST, port=args.smtp_port)
    handler = functools.partial(MailPage, directory=str(args.directory))
    web = ThreadingHTTPServer((LOCALHOST, args.http_port), handler)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever(), which runs in this very thread.
        threading.Thread(target=web.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    smtp.start()
    print(
        f"mail sink: SMTP {LOCALHOST}:{args.smtp_port}, web http://{LOCALHOST}:{args.http_port}/"
        f", files in {args.directory}",
        flush=True,
    )
    try:
        web.serve_forever()
    finally:
        web.server_close()
        smtp.stop()


if __name__ == "__main__":
    main()
