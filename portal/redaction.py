"""Credentials never reach a page or a log: the one rule, and where it is applied.

Connection URLs carry passwords (``postgres://fleetgate:s3cret@db/…``,
``redis://:s3cret@cache:6379/0``, ``mqtts://bridge:s3cret@broker``). They live in
settings, in the process environment (which runserver copies into ``request.META``),
in frame variables and in exception messages — everything Django's debug page and an
error log show. Rather than chase each place, the finished text is redacted as a last
step:

* ``RedactingExceptionReporter`` (``DEFAULT_EXCEPTION_REPORTER``) redacts the whole
  debug page and the plain-text report that error e-mails and logs carry;
* ``RedactingFilter`` (on every log handler in settings) redacts each record's message
  and traceback before any handler formats it.

The password part of ``scheme://user:password@host`` becomes ``••••``; the user and host
stay, because they are what one needs to find a misconfiguration.
"""

import logging
import re
import traceback

from django.views.debug import ExceptionReporter

MASK = "••••"

# scheme://[user]:password@ — the password runs to the last "@" before the host's "/".
CREDENTIALS = re.compile(
    r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:@/\s\"'<>]*:)(?P<password>[^/\s\"'<>]*)@"
)


def redact(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` masked."""
    if "://" not in text:
        return text
    return CREDENTIALS.sub(lambda m: f"{m['head']}{MASK}@", text)


class RedactingExceptionReporter(ExceptionReporter):
    """Django's error report (debug page, error e-mail, log text), passwords masked."""

    def get_traceback_html(self):
        return redact(str(super().get_traceback_html()))

    def get_traceback_text(self):
        return redact(str(super().get_traceback_text()))


class RedactingFilter(logging.Filter):
    """Masks credentials in a log record's message and its formatted traceback."""

    def filter(self, record):
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
