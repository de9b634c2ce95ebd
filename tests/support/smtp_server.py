#!/usr/bin/env python3
"""The test suite's SMTP server: a real SMTP server (aiosmtpd) on a loopback port that delivers every
message it accepts into Dovecot over LMTP, so that mail the bot sends arrives in the recipient's mailbox.
Usage: smtp_server.py SMTP_PORT LMTP_PORT [--oauth2 INTROSPECT_URL]. Prints "ready" once listening; stops
on SIGTERM.

With --oauth2 it authenticates as Exchange Online does for OAuth2 apps: EHLO advertises AUTH XOAUTH2 (and
only that), MAIL FROM before a successful AUTH is answered "530 5.7.0 Authentication required", and the
XOAUTH2 response ("user=U\x01auth=Bearer T\x01\x01", base64; in the AUTH line or after a "334 ") is checked by
POSTing token=T to INTROSPECT_URL (tests/support/oauth_server.py): an active token whose username is U or U's
local part gets "235 2.7.0 Authentication successful", anything else "535 5.7.3 Authentication
unsuccessful". Each attempt adds a line "ok USER" or "fail USER" to the file `auth-log` in the control folder.

Tests can make it fail as real servers do:
- while the file `refuse-mail-from` exists in the control folder (TMPDIR/escbot-smtp-SMTP_PORT), every
  MAIL FROM is answered with the file's first line (e.g. "535 5.7.8 Authentication credentials invalid",
  as a relay answers a wrong password);
- a recipient whose local part starts with "nobody" is refused: "550 5.1.1 <…>: Recipient address
  rejected: User unknown"."""
import asyncio
import base64
import binascii
import collections
import json
import logging
import os
import signal
import tempfile
import smtplib
import sys
import threading
import urllib.parse
import urllib.request
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult


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
        # Off the event loop, so that other sessions are not held up while one is delivered.
        def deliver():
            with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
                for rcpt in envelope.rcpt_tos:
                    lmtp.sendmail(envelope.mail_from, [rcpt], envelope.original_content)

        try:
            await asyncio.get_running_loop().run_in_executor(None, deliver)
        except smtplib.SMTPRecipientsRefused:
            return "550 no such mailbox"
        except Exception as e:  # the bot must see a temporary failure, and retry
            return f"451 delivery failed: {e}"
        return "250 delivered"


# Straight to the loopback server, whatever http_proxy says.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def introspect(url, token):
    """The introspection answer for `token` (RFC 7662), or {} when the server cannot be asked."""
    data = urllib.parse.urlencode({"token": token}).encode()
    try:
        with OPENER.open(urllib.request.Request(url, data=data), timeout=10) as r:
            return json.loads(r.read().decode())
    except Exception as e:
        print(f"smtp_server: introspection failed: {e}", file=sys.stderr, flush=True)
        return {}


class DeliverByLmtpWithOAuth2(DeliverByLmtp):
    CODE_OK = "235 2.7.0 Authentication successful"
    CODE_FAIL = "535 5.7.3 Authentication unsuccessful"

    def __init__(self, lmtp_port, control, introspect_url):
        super().__init__(lmtp_port, control)
        self.introspect_url = introspect_url

    def record(self, ok, user):
        with open(os.path.join(self.control, "auth-log"), "a") as f:
            f.write(f"{'ok' if ok else 'fail'} {user}\n")

    # aiosmtpd calls `auth_<MECHANISM>` methods of the handler with the server and the AUTH arguments
    # (["XOAUTH2"] or ["XOAUTH2", initial_response]).
    async def auth_XOAUTH2(self, server, args):
        if len(args) > 1:
            blob = args[1].encode()
            if blob == b"=":  # RFC 4954: an empty initial response
                blob = b""
            try:
                raw = base64.b64decode(blob, validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            raw = await server.challenge_auth("")
            if raw is MISSING:  # aborted or bad base64, already answered
                return AuthResult(success=False, handled=True)
        fields = dict(
            part.split("=", 1) for part in raw.decode("utf-8", "replace").split("\x01") if "=" in part
        )
        user = fields.get("user", "")
        auth = fields.get("auth", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        ok = False
        if user and token:
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(None, introspect, self.introspect_url, token)
            username = str(answer.get("username", ""))
            ok = answer.get("active") is True and username != "" and username.lower() in (
                user.lower(),
                user.split("@")[0].lower(),
            )
        self.record(ok, user or "-")
        if ok:
            return AuthResult(success=True, auth_data=user, message=self.CODE_OK)
        return AuthResult(success=False, handled=False, message=self.CODE_FAIL)


class LongAuthSMTP(SMTP):
    """aiosmtpd's SMTP, taking AUTH lines as long as real access tokens make them (an Entra ID token is
    1–3 kB, over the 512 bytes aiosmtpd allows a command); other limits as before."""

    line_length_limit = 65536  # the stream's limit, which caps every line read

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.line_length_limit = 1001  # DATA lines: RFC 5321's limit, as before
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        self.command_size_limits["AUTH"] = 65536


class LongAuthController(Controller):
    def factory(self):
        return LongAuthSMTP(self.handler, **self.SMTP_kwargs)


def main():
    smtp_port, lmtp_port = int(sys.argv[1]), int(sys.argv[2])
    control = os.path.join(tempfile.gettempdir(), f"escbot-smtp-{smtp_port}")
    os.makedirs(control, exist_ok=True)
    if len(sys.argv) > 4 and sys.argv[3] == "--oauth2":
        # aiosmtpd's warnings about AUTH without TLS (by design here) and about its own use of a deprecated
        # attribute, once per connection: not wanted on stderr.
        warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
        warnings.filterwarnings("ignore", "Session.login_data is deprecated")
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        controller = LongAuthController(
            DeliverByLmtpWithOAuth2(lmtp_port, control, sys.argv[4]),
            hostname="127.0.0.1",
            port=smtp_port,
            ready_timeout=30,  # a busy CI machine is slow to answer the controller's own start-up probe
            auth_required=True,
            auth_require_tls=False,  # plain SMTP on loopback
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
        )
    else:
        controller = Controller(
            DeliverByLmtp(lmtp_port, control), hostname="127.0.0.1", port=smtp_port, ready_timeout=30
        )
    controller.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    controller.stop()


if __name__ == "__main__":
    main()
