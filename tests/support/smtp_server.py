#!/usr/bin/env python3
"""The test suite's SMTP server: a real SMTP server (aiosmtpd) on a loopback port that delivers every
message it accepts into Dovecot over LMTP, so that mail the bot sends arrives in the recipient's mailbox.
Usage: smtp_server.py SMTP_PORT LMTP_PORT. Prints "ready" once listening; stops on SIGTERM.

Tests can make it fail as real servers do:
- while the file `refuse-mail-from` exists in the control folder (TMPDIR/escbot-smtp-SMTP_PORT), every
  MAIL FROM is answered with the file's first line (e.g. "535 5.7.8 Authentication credentials invalid",
  as a relay answers a wrong password);
- a recipient whose local part starts with "nobody" is refused: "550 5.1.1 <…>: Recipient address
  rejected: User unknown"."""
import os
import signal
import tempfile
import smtplib
import sys
import threading

from aiosmtpd.controller import Controller


class DeliverByLmtp:
    def __init__(self, lmtp_port, control):
        self.lmtp_port = lmtp_port
        self.control = control

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        try:
            with open(os.path.join(self.control, "refuse-mail-from")) as f:
                return f.readline().strip() or "535 5.7.8 Authentication credentials invalid"
        except FileNotFoundError:
            pass
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.split("@")[0].lower().startswith("nobody"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        # LMTP answers once per recipient after DATA, which smtplib reads as one reply: so deliver to each
        # recipient separately.
        try:
            with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
                for rcpt in envelope.rcpt_tos:
                    lmtp.sendmail(envelope.mail_from, [rcpt], envelope.original_content)
        except smtplib.SMTPRecipientsRefused:
            return "550 no such mailbox"
        except Exception as e:  # the bot must see a temporary failure, and retry
            return f"451 delivery failed: {e}"
        return "250 delivered"


def main():
    smtp_port, lmtp_port = int(sys.argv[1]), int(sys.argv[2])
    control = os.path.join(tempfile.gettempdir(), f"escbot-smtp-{smtp_port}")
    os.makedirs(control, exist_ok=True)
    controller = Controller(DeliverByLmtp(lmtp_port, control), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
