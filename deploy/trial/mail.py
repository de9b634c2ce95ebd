#!/usr/bin/env python3
"""DEMO ONLY: read and answer the compose trial's mail from the host, with Python's standard library alone.

  python3 deploy/trial/mail.py list nia.nurse              # the INBOX: number, date, from, subject
  python3 deploy/trial/mail.py show nia.nurse 1            # message 1's text
  python3 deploy/trial/mail.py reply nia.nurse 1 "RESOLVED
  Outcome: the enquiry is reopened."                       # answer message 1, as a mail client would
  python3 deploy/trial/mail.py list bradford --folder "Board notifications" --password DEMO-ONLY-bradford-mailbox

The user is a Dovecot user of the trial (deploy/secrets/mail_users); the password defaults to the demo people's
(DEMO-ONLY-password). IMAP on 127.0.0.1:$TRIAL_IMAP_PORT (143), SMTP on 127.0.0.1:$TRIAL_SMTP_PORT (2525).
Reading never marks a message as read.
"""
import argparse
import email
import email.policy
import email.utils
import imaplib
import os
import smtplib
from email.message import EmailMessage

HOST = "127.0.0.1"
IMAP_PORT = int(os.environ.get("TRIAL_IMAP_PORT", "143"))
SMTP_PORT = int(os.environ.get("TRIAL_SMTP_PORT", "2525"))


def fetch_all(args):
    imap = imaplib.IMAP4(HOST, IMAP_PORT)
    try:
        imap.login(args.user, args.password)
    except imaplib.IMAP4.error as e:
        raise SystemExit(f"{args.user} cannot log in ({e}): check --password (deploy/secrets/mail_users)")
    status, _ = imap.select(f'"{args.folder}"', readonly=True)
    if status != "OK":
        raise SystemExit(f"no folder {args.folder!r} in {args.user}'s mailbox")
    messages = []
    for n in imap.search(None, "ALL")[1][0].split():
        raw = imap.fetch(n, "(BODY.PEEK[])")[1][0][1]
        messages.append(email.message_from_bytes(raw, policy=email.policy.default))
    imap.logout()
    return messages


def text_of(msg):
    part = msg.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["list", "show", "reply"])
    p.add_argument("user")
    p.add_argument("number", nargs="?", type=int)
    p.add_argument("text", nargs="?")
    p.add_argument("--password", default="DEMO-ONLY-password")
    p.add_argument("--folder", default="INBOX")
    args = p.parse_args()
    messages = fetch_all(args)
    if args.command == "list":
        for i, m in enumerate(messages, 1):
            print(f"{i:3}  {m['Date']}  {m['From']}\n     {m['Subject']}")
        return
    if not args.number or not 1 <= args.number <= len(messages):
        raise SystemExit(f"give a message number from 1 to {len(messages)}")
    msg = messages[args.number - 1]
    if args.command == "show":
        print(f"From: {msg['From']}\nTo: {msg['To']}\nCc: {msg['Cc'] or ''}\nSubject: {msg['Subject']}\n")
        print(text_of(msg))
        for part in msg.iter_attachments():
            print(f"[attached: {part.get_filename()} ({part.get_content_type()})]")
        return
    if not args.text:
        raise SystemExit("give the reply's text, e.g. \"RESOLVED\"")
    me = msg["Delivered-To"] or f"{args.user}@demo.test"
    # Long lines are not folded: Python would fold the bot's long Message-IDs in In-Reply-To and References into
    # RFC 2047 encoded words, which no longer name the message replied to.
    reply = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
    reply["From"] = me
    reply["To"] = msg["Reply-To"] or msg["From"]
    subject = str(msg["Subject"] or "")
    reply["Subject"] = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    reply["Message-ID"] = email.utils.make_msgid(domain=me.split("@")[-1])
    reply["Date"] = email.utils.formatdate(localtime=True)
    if msg["Message-ID"]:
        reply["In-Reply-To"] = msg["Message-ID"]
        reply["References"] = " ".join(filter(None, [str(msg["References"] or ""), str(msg["Message-ID"])]))
    quoted = "\n".join("> " + line for line in text_of(msg).splitlines())
    reply.set_content(f"{args.text}\n\nOn {msg['Date']}, {msg['From']} wrote:\n{quoted}\n")
    with smtplib.SMTP(HOST, SMTP_PORT) as smtp:
        smtp.send_message(reply)
    print(f"sent from {me} to {reply['To']}: {reply['Subject']}")


if __name__ == "__main__":
    main()
