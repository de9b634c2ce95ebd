#!/usr/bin/env python3
"""Writes deploy/config/boards/*.toml, the compose trial's board files, from the shipped config/boards/*.toml:
the same settings, with every address moved to the trial's mail server and an [imap] table added.

  python3 deploy/config/make-boards.py        # from the repository root; run again when config/boards changes

For board ID (DEMO ONLY, all on the trial's Dovecot, deploy/mail/):
- mailbox: ID@boards.demo.test, read over IMAP as Dovecot user ID, password from the secret
  imap_password_ID (docker-compose.yml; deploy/bot/with-secrets.sh puts it in ESCALATION_BOT_IMAP_PASSWORD_ID);
- roles: ID-manager@, ID-office@, ID-chair@boards.demo.test (a role whose shipped address is the board mailbox
  keeps the board mailbox: Bradford's business manager; roles sharing an address keep sharing one);
- allowed_sender_domains: demo.test (the practitioners' health.demo.test and council.demo.test) first.
"""
import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCE = ROOT / "config" / "boards"
TARGET = ROOT / "deploy" / "config" / "boards"
DOMAIN = "boards.demo.test"
ROLE_PART = {
    "business-manager": "manager",
    "strategic-safeguarding-service-manager": "manager",
    "business-office": "office",
    "independent-chair": "chair",
}

HEADER = """# DEMO ONLY: the compose trial's copy of config/boards/{name}, made by deploy/config/make-boards.py (run it
# again rather than editing this file). Every address is on the trial's mail server (deploy/mail/).
"""

IMAP = """
# The board mailbox on the trial's Dovecot. 127.0.0.1 is Dovecot itself: the bot shares the `mail` service's
# network namespace (docker-compose.yml), which is what lets it use plain IMAP (tls = "none" is refused for any
# host but this machine's loopback). The password is not here: ESCALATION_BOT_IMAP_PASSWORD_{var} holds it,
# from the secret file imap_password_{id} (deploy/bot/with-secrets.sh).
[imap]
host = "127.0.0.1"
port = 143
tls = "none"
username = "{id}"
"""


def main():
    TARGET.mkdir(parents=True, exist_ok=True)
    for src in sorted(SOURCE.glob("*.toml")):
        text = src.read_text()
        board = tomllib.loads(text)
        bid = board["id"]
        if "imap" in board:
            raise SystemExit(f"{src} already has [imap]: update this script")
        mailbox = f"{bid}@{DOMAIN}"
        moved = {board["mailbox"].lower(): mailbox}
        for role, contact in board.get("roles", {}).items():
            moved.setdefault(contact["email"].lower(), f"{bid}-{ROLE_PART.get(role, role)}@{DOMAIN}")

        def address(m):
            return f'{m.group(1)}"{moved[m.group(2).lower()]}"'

        # Comment lines at the top go: the header says what this file is.
        lines = text.splitlines(keepends=True)
        while lines and lines[0].startswith("#"):
            lines.pop(0)
        body = "".join(lines)
        body = re.sub(r'^((?:mailbox|email) = )"([^"]+)"', address, body, flags=re.M)
        body = re.sub(
            r"^allowed_sender_domains = \[",
            '# demo.test first: the trial\'s practitioners write from health.demo.test and council.demo.test.\n'
            'allowed_sender_domains = ["demo.test", ',
            body,
            count=1,
            flags=re.M,
        )
        out = HEADER.format(name=src.name) + body.rstrip("\n") + "\n" + IMAP.format(
            id=bid, var=bid.upper().replace("-", "_")
        )
        check = tomllib.loads(out)
        assert check["mailbox"] == mailbox and check["imap"]["username"] == bid
        assert all(c["email"].endswith("@" + DOMAIN) for c in check.get("roles", {}).values())
        (TARGET / src.name).write_text(out)
        print(f"{TARGET / src.name}: mailbox {mailbox}, roles "
              + ", ".join(sorted({c['email'] for c in check.get('roles', {}).values()})))


if __name__ == "__main__":
    main()
