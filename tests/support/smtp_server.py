#!/usr/bin/env python3
"""The test suite's SMTP server: a real SMTP server (aiosmtpd) on a loopback port that delivers every
message it accepts into Dovecot over LMTP, so that mail the bot sends arrives in the recipient's mailbox.
Usage: smtp_server.py SMTP_PORT LMTP_PORT. Prints "ready" once listening; stops on SIGTERM."""
import signal
import smtplib
import sys
import threading

from aiosmtpd.controller import Controller


class DeliverByLmtp:
    def __init__(self, lmtp_port):
        self.lmtp_port = lmtp_port

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
    controller = Controller(DeliverByLmtp(lmtp_port), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
