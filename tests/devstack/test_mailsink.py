from __future__ import annotations

import smtplib
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
