#!/usr/bin/env python3
"""DEMO ONLY: the compose trial's SMTP server (docker-compose.yml, service `relay`).

It accepts every message, for any recipient, without authentication, and delivers each recipient's copy into
Dovecot over LMTP (deploy/mail/dovecot.conf), where the local part names the mailbox: the bot's acknowledgements
to nia.nurse@health.demo.test land in Dovecot user nia.nurse, an escalation sent to bradford@boards.demo.test in
the board mailbox the bot reads. Nothing is relayed anywhere else: mail to any address stays in the trial.
The same delivery as the test suite's SMTP server (tests/support/smtp_server.py), without its fault injection.

Environment: RELAY_LISTEN (default 0.0.0.0), RELAY_PORT (2525), LMTP_HOST (127.0.0.1), LMTP_PORT (24).
Stops on SIGTERM or SIGINT.
"""
import logging
import os
import signal
import smtplib
import threading

from aiosmtpd.controller import Controller

log = logging.getLogger("relay")


class DeliverByLmtp:
    def __init__(self, host, port):
        self.host = host
        self.port = port

    async def handle_DATA(self, server, session, envelope):
        # LMTP answers once per recipient after DATA, which smtplib reads as one answer: so each recipient is
        # delivered to in a transaction of its own.
        try:
            with smtplib.LMTP(self.host, self.port, timeout=30) as lmtp:
                for rcpt in envelope.rcpt_tos:
                    lmtp.sendmail(envelope.mail_from, [rcpt], envelope.original_content)
        except smtplib.SMTPRecipientsRefused as e:
            log.warning("refused by Dovecot: %s", e.recipients)
            return "550 5.1.1 mailbox unavailable"
        except Exception as e:  # Dovecot down or restarting: the sender keeps the message and tries again
            log.warning("delivery failed, answered 451: %s", e)
            return "451 4.3.0 delivery failed, try again later"
        log.info("delivered from %s to %s (%d bytes)", envelope.mail_from, ", ".join(envelope.rcpt_tos),
                 len(envelope.original_content))
        return "250 2.0.0 delivered"


def main():
    logging.basicConfig(level=logging.INFO, format="relay: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's own: a line per SMTP step
    listen = os.environ.get("RELAY_LISTEN", "0.0.0.0")
    port = int(os.environ.get("RELAY_PORT", "2525"))
    handler = DeliverByLmtp(os.environ.get("LMTP_HOST", "127.0.0.1"), int(os.environ.get("LMTP_PORT", "24")))
    controller = Controller(
        handler,
        hostname=listen,
        port=port,
        server_hostname="relay.demo.test",
        enable_SMTPUTF8=True,
        data_size_limit=50 * 1024 * 1024,
    )
    controller.start()
    log.info("listening on %s:%d, delivering to LMTP %s:%d", listen, port, handler.host, handler.port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
