"""The order confirmation email: composed as text + HTML, sent over SMTP with smtplib.

The Message-ID is derived from the order, never random: if the same confirmation is ever
sent twice (see ``confirmations`` for the one window where that can happen), both copies
carry the same id, so a mail client or a support engineer can recognise the duplicate.
"""

from __future__ import annotations

import contextlib
import functools
import html
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr

from services.core.settings import SmtpSettings


@dataclass(frozen=True, slots=True)
class Line:
    product_name: str
    quantity: int
    unit_price_cents: int

    @property
    def amount_cents(self) -> int:
        return self.quantity * self.unit_price_cents


@dataclass(frozen=True, slots=True)
class Confirmation:
    """Everything the email says, read from the database in one go."""

    order_id: int
    recipient_email: str
    recipient_name: str
    placed_at: datetime
    total_cents: int
    lines: tuple[Line, ...]


def message_id(order_id: int, domain: str) -> str:
    return f"<order-{order_id}.confirmation@{domain}>"


def money(cents: int) -> str:
    return f"{cents // 100:,}.{cents % 100:02d}"


def _text(confirmation: Confirmation) -> str:
    width = max(len(line.product_name) for line in confirmation.lines)
    rows = [
        f"  {line.quantity:>4} x {line.product_name:<{width}}  "
        f"{money(line.unit_price_cents):>10}  {money(line.amount_cents):>12}"
        for line in confirmation.lines
    ]
    return "\n".join(
        [
            f"Hello {confirmation.recipient_name},",
            "",
            f"thank you for your order #{confirmation.order_id}. You ordered:",
            "",
            *rows,
            "",
            f"  Total: {money(confirmation.total_cents)}",
            "",
            "The Stampede shop",
            "",
        ]
    )


def _html(confirmation: Confirmation) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{line.quantity}</td><td>{e(line.product_name)}</td>"
        f'<td align="right">{money(line.unit_price_cents)}</td>'
        f'<td align="right">{money(line.amount_cents)}</td></tr>'
        for line in confirmation.lines
    )
    return (
        "<!doctype html><html><body>"
        f"<p>Hello {e(confirmation.recipient_name)},</p>"
        f"<p>thank you for your order #{confirmation.order_id}. You ordered:</p>"
        "<table><thead><tr><th>Qty</th><th>Product</th><th>Unit price</th><th>Amount</th>"
        f'</tr></thead><tbody>{rows}</tbody><tfoot><tr><th colspan="3">Total</th>'
        f'<th align="right">{money(confirmation.total_cents)}</th></tr></tfoot></table>'
        "<p>The Stampede shop</p></body></html>"
    )


# Both parts quoted-printable: readable ASCII stays readable, any other text is 7-bit safe.
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


def compose(confirmation: Confirmation, *, sender: str, msg_id: str) -> Message:
    """The email, built with the ``compat32`` MIME classes: the same structure and
    encodings a mail client reads from ``EmailMessage``, at a quarter of its CPU cost
    (its header objects parse every value they are given; this is on every email's
    path, on the same cores as the api)."""
    message = MIMEMultipart("alternative")
    message["Subject"] = f"Your order #{confirmation.order_id}"
    message["From"] = sender
    # A name is one line: a line break in a header value would start a new header.
    name = " ".join(confirmation.recipient_name.split())
    message["To"] = formataddr((name, confirmation.recipient_email), charset=_UTF8)
    message["Date"] = format_datetime(confirmation.placed_at)
    message["Message-ID"] = msg_id
    message.attach(_part(_text(confirmation), "plain"))
    message.attach(_part(_html(confirmation), "html"))
    return message


def _part(text: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(text, _UTF8)  # sets the charset and the transfer encoding too
    return part


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Built once per process: loading the system's CA bundle costs more CPU than the rest
    # of a send, and a plain connection (``security="none"``) needs none at all.
    return ssl.create_default_context()


def connect(settings: SmtpSettings, host: str) -> smtplib.SMTP:
    """An SMTP session, greeted and logged in, ready for :func:`deliver` (as many
    messages as the caller has); :func:`close` ends it.

    Raises ``smtplib.SMTPException`` or ``OSError``.
    """
    smtp: smtplib.SMTP
    if settings.security == "tls":
        smtp = smtplib.SMTP_SSL(
            host, settings.port, timeout=settings.timeout_s, context=_tls_context()
        )
    else:
        smtp = smtplib.SMTP(host, settings.port, timeout=settings.timeout_s)
    try:
        if settings.security == "starttls":
            smtp.starttls(context=_tls_context())
        if settings.username is not None and settings.password is not None:
            smtp.login(settings.username, settings.password.get_secret_value())
    except BaseException:
        smtp.close()
        raise
    return smtp


def deliver(smtp: smtplib.SMTP, message: Message) -> None:
    """Hand ``message`` to the server over an open session; returns once the server
    accepted it (its ``250`` to the final dot).

    Raises ``smtplib.SMTPException`` (server refusals; ``smtp_code`` says whether 4xx,
    transient, or 5xx, permanent; after a refusal smtplib has reset the transaction, so
    the session takes the next message) or ``OSError`` (lost connection, timeouts).
    """
    smtp.send_message(message)


def close(smtp: smtplib.SMTP) -> None:
    """End the session politely. Never raises: what it sent was accepted already, and
    a failure here must not make anyone send it again. So no ``with smtp:``, whose QUIT
    raises on an odd reply or a timeout."""
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.quit()
    smtp.close()


def send(message: Message, settings: SmtpSettings, host: str) -> None:
    """Hand ``message`` to the SMTP server in a session of its own; returns once the
    server accepted it.

    Raises ``smtplib.SMTPException`` (server refusals; ``smtp_code`` says whether 4xx,
    transient, or 5xx, permanent) or ``OSError`` (unreachable, timeouts).
    """
    smtp = connect(settings, host)
    try:
        deliver(smtp, message)
    except BaseException:
        smtp.close()
        raise
    close(smtp)
