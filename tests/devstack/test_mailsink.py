from __future__ import annotations

import smtplib
import socket
import threading
import time
import urllib.request
from email.message import EmailMessage
from pathlib import Path

from devstack.mailsink import MailSink
from devstack.servers import LOCALHOST, free_port, start


def test_mail_sink_keeps_each_email_and_lists_it(tmp_path: Path) -> None:
    sink = MailSink(mail_dir=tmp_path / "mail", smtp_port=free_port(), http_port=free_port())
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["To"] = "ada@example.com"
    message["Subject"] = "Your order #7"
    message["Message-ID"] = "<order-7.confirmation@stampede.dev>"
    message.set_content("Total: 12.50")

    with start(sink, log_path=tmp_path / "sink.log") as process:
        process.wait_ready()
        with smtplib.SMTP(LOCALHOST, sink.smtp_port, timeout=5) as smtp:
            smtp.send_message(message)
        [eml] = sink.mail_dir.glob("*.eml")
        page_url = f"http://{LOCALHOST}:{sink.http_port}/"
        with urllib.request.urlopen(page_url, timeout=5) as response:
            page = response.read().decode()
        with urllib.request.urlopen(page_url + eml.name, timeout=5) as response:  # noqa: S310
            content_type = response.headers["content-type"]
            body = response.read().decode()

    assert "order-7.confirmation@stampede.dev" in eml.name
    assert eml.name in page
    assert content_type.startswith("text/plain")
    assert "Subject: Your order #7" in body
    assert "Total: 12.50" in body


def _message(order: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "shop@example.com"
    message["To"] = "ada@example.com"
    message["Subject"] = f"Your order #{order}"
    message.set_content("Total: 12.50")
    return message


def _held_ports(hold_file: Path) -> set[int]:
    listing = hold_file.with_name(hold_file.name + ".held")
    try:
        return {int(line) for line in listing.read_text().split()}
    except (OSError, ValueError):
        return set()


def _wait_held(hold_file: Path, port: int) -> None:
    deadline = time.monotonic() + 5
    while port not in _held_ports(hold_file):
        assert time.monotonic() < deadline, "the sink never held the message"
        time.sleep(0.01)


def test_while_held_a_client_that_dies_before_its_250_leaves_no_email(tmp_path: Path) -> None:
    hold_file = tmp_path / "hold"
    sink = MailSink(
        mail_dir=tmp_path / "mail",
        smtp_port=free_port(),
        http_port=free_port(),
        hold_file=hold_file,
    )
    with start(sink, log_path=tmp_path / "sink.log") as process:
        process.wait_ready()
        hold_file.touch()
        dying = smtplib.SMTP(LOCALHOST, sink.smtp_port, timeout=5)
        lives = smtplib.SMTP(LOCALHOST, sink.smtp_port, timeout=5)
        results: dict[str, object] = {}

        def send(name: str, smtp: smtplib.SMTP, order: int) -> None:
            try:
                smtp.send_message(_message(order))
                results[name] = "250"
            except (smtplib.SMTPException, OSError) as error:
                results[name] = error

        threads = [
            threading.Thread(target=send, args=("dying", dying, 1)),
            threading.Thread(target=send, args=("lives", lives, 2)),
        ]
        for thread in threads:
            thread.start()
        for smtp in (dying, lives):
            assert smtp.sock is not None
            _wait_held(hold_file, smtp.sock.getsockname()[1])
        assert dying.sock is not None
        dying.sock.shutdown(socket.SHUT_RDWR)  # the client dies, still waiting for its 250
        time.sleep(0.2)
        hold_file.unlink()
        for thread in threads:
            thread.join(timeout=5)
        lives.quit()

        assert results["lives"] == "250"
        assert results["dying"] != "250"
        [eml] = sink.mail_dir.glob("*.eml")
        assert "Subject: Your order #2" in eml.read_text()
