"""What the worker's tasks raise, and whether Celery should retry it.

    PermanentError        never retried: the task is dead-lettered at once
    ├── OrderVanished     the order no longer exists
    └── MailRejected      the SMTP server refused the message for good (5xx)
    LeaseBusy             another attempt holds the email's lease: retry when it ends
    AcceptedNotRecorded   the SMTP server accepted the email but recording it failed:
                          retry the recording only, never the send

Everything else that is transient (SMTP 4xx, network errors and timeouts, database
outages) is retried with exponential backoff; see ``tasks.TRANSIENT``.
"""

from __future__ import annotations

import smtplib


class PermanentError(Exception):
    """Retrying cannot help."""


class OrderVanished(PermanentError):
    def __init__(self, order_id: int) -> None:
        super().__init__(f"order {order_id} does not exist")
        self.order_id = order_id


class MailRejected(PermanentError):
    """The SMTP server answered 5xx: this message will never be accepted as it is."""


class LeaseBusy(Exception):
    """Another attempt at the same email holds its lease for ``retry_in_s`` more."""

    def __init__(self, message_id: str, retry_in_s: float) -> None:
        super().__init__(f"{message_id}: another attempt holds the lease for {retry_in_s:.0f}s")
        self.retry_in_s = retry_in_s


def is_permanent_smtp_error(error: smtplib.SMTPException) -> bool:
    """5xx replies are permanent (RFC 5321 §4.2.1); 4xx and lost connections are not."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes)
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code >= 500
    return False


class AcceptedNotRecorded(Exception):
    """The SMTP server accepted the email under ``token``'s attempt, and recording that
    failed (the database is unreachable, or the attempt ran out of time). The attempt
    must go on recording until the database is back; sending again would be a duplicate.
    """

    def __init__(self, message_id: str, token: str) -> None:
        super().__init__(f"{message_id}: accepted by the SMTP server, not recorded yet")
        self.message_id = message_id
        self.token = token
