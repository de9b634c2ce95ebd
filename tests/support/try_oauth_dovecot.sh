#!/usr/bin/env bash
# Manual check of the OAuth2 (SASL XOAUTH2) test servers, outside cargo: run as root (Dovecot needs it, as
# in tests/common/mailserver.rs) with `bash tests/support/try_oauth_dovecot.sh`. In a temporary folder it
# starts tests/support/oauth_server.py, Dovecot with the configuration of tests/common/mailserver.rs plus
# the oauth2 passdb of tests/support/dovecot-oauth2.md, and tests/support/smtp_server.py --oauth2; then,
# with Python's imaplib and smtplib, checks that
#   - a token of client "bot-bradford" (user bsab) logs in to IMAP as bsab; password login still works;
#   - the same token fails at once after /control/revoke_all, and a fresh one after /control/expire_all;
#   - a token for another user ("other") cannot log in as bsab; neither can a token never issued;
#   - SMTP: AUTH XOAUTH2 with a good token gives 235, with a bad one 535 5.7.3, MAIL FROM before AUTH 530;
# and prints the exchanges on the wire and Dovecot's log. Exits non-zero when a check fails.
# KEEP=1 keeps the temporary folder. Requires: dovecot (dovecot-imapd, dovecot-lmtpd), python3, aiosmtpd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
d=$(mktemp -d /tmp/escbot-oauth.XXXXXX)
chmod 755 "$d"  # as tempfile::tempdir makes it: Dovecot's auth and mail processes run as the dovecot user
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "${KEEP:-}" = 1 ]; then echo "kept $d"; else rm -rf "$d"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 200); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "port $1 ($2) did not open" >&2
    return 1
}

imap_port=$(free_port); lmtp_port=$(free_port); smtp_port=$(free_port); oauth_port=$(free_port)
uid=$(id -u dovecot); gid=$(id -g dovecot)
mkdir -p "$d"/{mail,home,state,run}

cat >"$d/clients.json" <<'EOF'
{
  "bot-bradford": {"secret": "s3cret", "username": "bsab"},
  "bot-other": {"secret": "other-secret", "username": "other"}
}
EOF
python3 "$here/oauth_server.py" "$oauth_port" "$d/clients.json" >"$d/oauth.out" 2>"$d/oauth.log" &
pids+=($!)

# The configuration of tests/common/mailserver.rs, with the additions of tests/support/dovecot-oauth2.md
# (marked "oauth2").
cat >"$d/dovecot.conf" <<EOF
base_dir = $d/run
state_dir = $d/state
instance_name = escbot-$imap_port
protocols = imap lmtp
listen = 127.0.0.1
log_path = $d/dovecot.log
ssl = no
disable_plaintext_auth = no
# oauth2: the SASL mechanisms of OAuth2 bearer tokens, besides passwords.
auth_mechanisms = plain login xoauth2 oauthbearer
# oauth2: why each login failed, in dovecot.log.
auth_verbose = yes
# oauth2: answer a failed login at once (about 0.5 s), not after 2 s.
auth_failure_delay = 0
# oauth2: no cache of passdb results (the default; explicit, so that a revoked token fails at once).
auth_cache_size = 0
mail_location = maildir:$d/mail/%n
first_valid_uid = 1
passdb {
  driver = passwd-file
  # oauth2: passwords only; a token is never compared with a password.
  mechanisms = plain login
  args = scheme=PLAIN username_format=%n $d/users
}
# oauth2: tokens are checked by the OAuth2 server's introspection endpoint.
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $d/dovecot-oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$d/home/%n allow_all_users=yes
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap_port
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp_port
  }
}
protocol lmtp {
  auth_username_format = %Ln
}
# oauth2: no authentication penalty. Otherwise, after a failed login, Dovecot delays every login from the
# same IP (all tests come from 127.0.0.1) by 2, 4, 8, then 15 s. login_trusted_networks does not lift it
# in 2.3.19. (In a fresh base_dir this logs nothing; reusing one whose old socket file is left over, auth
# logs once "Error: net_connect_unix(anvil-auth-penalty) failed: Connection refused", which is harmless.)
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF
cat >"$d/dovecot-oauth2.conf.ext" <<EOF
introspection_url = http://127.0.0.1:$oauth_port/introspect
introspection_mode = post
force_introspection = yes
username_attribute = username
username_format = %Ln
active_attribute = active
active_value = true
timeout_msecs = 10000
EOF
for u in bsab nia.nurse sam.social; do echo "$u:{PLAIN}test-password"; done >"$d/users"
chown -R "$uid:$gid" "$d/mail" "$d/home"

dovecot -F -c "$d/dovecot.conf" >"$d/dovecot.stdout" 2>&1 &
pids+=($!)
wait_port "$imap_port" Dovecot || { cat "$d/dovecot.stdout" "$d/dovecot.log"; exit 1; }
python3 "$here/smtp_server.py" "$smtp_port" "$lmtp_port" --oauth2 "http://127.0.0.1:$oauth_port/introspect" \
    >"$d/smtp.out" 2>"$d/smtp.log" &
pids+=($!)
wait_port "$oauth_port" oauth_server.py
wait_port "$smtp_port" smtp_server.py

status=0
D="$d" IMAP=$imap_port SMTP=$smtp_port OAUTH=$oauth_port python3 - <<'PY' || status=$?
import base64, imaplib, json, os, smtplib, socket, sys, tempfile, time, urllib.error, urllib.parse, urllib.request

IMAP, SMTP, OAUTH = int(os.environ["IMAP"]), int(os.environ["SMTP"]), int(os.environ["OAUTH"])
base = f"http://127.0.0.1:{OAUTH}"
failures = []
urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler({})))


def check(what, cond):
    print(("PASS " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def post(path, body=b"", form=None):
    data = urllib.parse.urlencode(form).encode() if form is not None else body
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, data=data)) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def token(client, secret):
    status, body = post("/common/oauth2/v2.0/token", form={
        "grant_type": "client_credentials", "client_id": client, "client_secret": secret,
        "scope": "https://outlook.office365.com/.default"})
    assert status == 200, body
    return body["access_token"]


def xoauth2(user, tok):
    return f"user={user}\x01auth=Bearer {tok}\x01\x01".encode()


def imap_raw(user, tok, answer=b"", sasl_ir=False):
    """XOAUTH2 over a raw socket, as our Rust client does it; returns the lines exchanged."""
    s = socket.create_connection(("127.0.0.1", IMAP), 10)
    f = s.makefile("rb")
    wire = ["S: " + f.readline().decode().rstrip()]
    b64 = base64.b64encode(xoauth2(user, tok)).decode()
    if sasl_ir:
        line = f"a1 AUTHENTICATE XOAUTH2 {b64}"
    else:
        line = "a1 AUTHENTICATE XOAUTH2"
    s.sendall(line.encode() + b"\r\n"); wire.append("C: " + line[:60] + ("…" if len(line) > 60 else ""))
    sent_response = sasl_ir
    t0 = time.time()
    while True:
        reply = f.readline().decode().rstrip()
        wire.append(f"S: {reply}   [{time.time() - t0:.2f}s]")
        if reply.startswith("+"):
            if not sent_response:
                s.sendall(b64.encode() + b"\r\n"); wire.append("C: <base64 initial response>")
                sent_response = True
            else:
                payload = reply[2:].strip()
                try:
                    wire.append("   (continuation decodes to " + base64.b64decode(payload).decode() + ")")
                except Exception:
                    pass
                s.sendall(answer + b"\r\n"); wire.append(f"C: {answer.decode()!r} (answer to the error)")
        else:
            break
    s.sendall(b"a2 LOGOUT\r\n")
    s.close()
    return wire, reply


def show(title, wire):
    print(f"--- {title}")
    for w in wire:
        print("    " + w)


# Token endpoint, Microsoft-like errors.
st, body = post("/mytenant/oauth2/v2.0/token", form={"grant_type": "client_credentials",
                "client_id": "nobody", "client_secret": "x", "scope": "s"})
check(f"unknown client -> 400 unauthorized_client ({st} {body['error']})",
      st == 400 and body["error"] == "unauthorized_client" and "AADSTS700016" in body["error_description"])
st, body = post("/mytenant/oauth2/v2.0/token", form={"grant_type": "client_credentials",
                "client_id": "bot-bradford", "client_secret": "wrong", "scope": "s"})
check(f"wrong secret -> 401 invalid_client ({st} {body['error']})",
      st == 401 and body["error"] == "invalid_client" and "AADSTS7000215" in body["error_description"])
st, body = post("/mytenant/oauth2/v2.0/token", form={"grant_type": "client_credentials",
                "client_id": "bot-bradford", "client_secret": "s3cret"})
check(f"no scope -> 400 invalid_request AADSTS900144 ({st} {body['error']})",
      st == 400 and body["error"] == "invalid_request" and "AADSTS900144" in body["error_description"])
st, body = post("/mytenant/oauth2/v2.0/token", form={"grant_type": "password",
                "client_id": "bot-bradford", "client_secret": "s3cret", "scope": "s"})
check(f"password grant -> 400 unsupported_grant_type ({st} {body['error']})",
      st == 400 and body["error"] == "unsupported_grant_type")

# IMAP: a good token.
good = token("bot-bradford", "s3cret")
m = imaplib.IMAP4("127.0.0.1", IMAP)
typ, data = m.authenticate("XOAUTH2", lambda _: xoauth2("bsab", good))
check(f"IMAP XOAUTH2 good token -> {typ} {data}", typ == "OK")
typ, data = m.select("INBOX")
check(f"  and the session works: SELECT INBOX -> {typ}", typ == "OK")
m.logout()
wire, last = imap_raw("bsab", good, sasl_ir=True)
show("IMAP, good token, SASL-IR (initial response in the command)", wire)
check("  SASL-IR good token -> OK", last.startswith("a1 OK"))

# Password login still works.
m = imaplib.IMAP4("127.0.0.1", IMAP)
typ, data = m.login("bsab", "test-password")
check(f"IMAP password login bsab -> {typ}", typ == "OK")
m.logout()
m = imaplib.IMAP4("127.0.0.1", IMAP)
try:
    m.login("bsab", good)
    check("IMAP LOGIN with the token as password must fail", False)
except imaplib.IMAP4.error as e:
    check(f"IMAP LOGIN with the token as the password fails: {e}", True)
m.shutdown()


def imap_fails(title, user, tok):
    m = imaplib.IMAP4("127.0.0.1", IMAP)
    calls = []
    def respond(challenge):
        calls.append(challenge)
        return xoauth2(user, tok) if len(calls) == 1 else b""
    t0 = time.time()
    try:
        typ, data = m.authenticate("XOAUTH2", respond)
        check(f"{title} must fail, got {typ} {data}", False)
    except imaplib.IMAP4.error as e:
        check(f"{title} -> {e} after {time.time() - t0:.2f}s; server's continuations: {calls[1:]}",
              "AUTHENTICATIONFAILED" in str(e))
    m.shutdown()


# A token for another user.
other = token("bot-other", "other-secret")
imap_fails("IMAP XOAUTH2 as bsab with other's token", "bsab", other)
show("IMAP, other user's token, on the wire", imap_raw("bsab", other)[0])
# A token never issued.
imap_fails("IMAP XOAUTH2 with a token never issued", "bsab", "not-a-token")
show("IMAP, unknown token, on the wire", imap_raw("bsab", "not-a-token")[0])
show("IMAP, unknown token, SASL-IR, on the wire", imap_raw("bsab", "not-a-token", sasl_ir=True)[0])
show("IMAP, unknown token, answering the error continuation with '*' (cancel)",
     imap_raw("bsab", "not-a-token", answer=b"*")[0])
show("IMAP, unknown token, answering the error continuation with the response again (as imaplib does "
     "with a constant authobject)",
     imap_raw("bsab", "not-a-token", answer=base64.b64encode(xoauth2("bsab", "not-a-token")))[0])

# Revocation: the token that just worked fails at once.
post("/control/revoke_all")
imap_fails("IMAP XOAUTH2 with the revoked (previously good) token", "bsab", good)
show("IMAP, revoked token, on the wire", imap_raw("bsab", good)[0])

# Expiry.
fresh = token("bot-bradford", "s3cret")
m = imaplib.IMAP4("127.0.0.1", IMAP)
typ, _ = m.authenticate("XOAUTH2", lambda _: xoauth2("bsab", fresh))
check(f"IMAP XOAUTH2 with a fresh token after revoke_all -> {typ}", typ == "OK")
m.logout()
post("/control/expire_all")
imap_fails("IMAP XOAUTH2 with the expired token", "bsab", fresh)

# Short-lived tokens.
post("/control/expires_in", b"2")
short = token("bot-bradford", "s3cret")
m = imaplib.IMAP4("127.0.0.1", IMAP)
typ, _ = m.authenticate("XOAUTH2", lambda _: xoauth2("bsab", short))
check(f"IMAP XOAUTH2 with a 2-second token, at once -> {typ}", typ == "OK")
m.logout()
time.sleep(2.5)
imap_fails("IMAP XOAUTH2 with the 2-second token, 2.5 s later", "bsab", short)
post("/control/expires_in", b"3600")

# Changing the client's mailbox user.
post("/control/clients", json.dumps({"bot-bradford": {"secret": "s3cret", "username": "nia.nurse"}}).encode())
moved = token("bot-bradford", "s3cret")
imap_fails("IMAP XOAUTH2 as bsab with a token now for nia.nurse", "bsab", moved)
m = imaplib.IMAP4("127.0.0.1", IMAP)
typ, _ = m.authenticate("XOAUTH2", lambda _: xoauth2("nia.nurse", moved))
check(f"  but as nia.nurse -> {typ}", typ == "OK")
m.logout()
post("/control/clients", json.dumps({"bot-bradford": {"secret": "s3cret", "username": "bsab"},
                                     "bot-other": {"secret": "other-secret", "username": "other"}}).encode())

# SMTP.
s = smtplib.SMTP("127.0.0.1", SMTP)
code, msg = s.ehlo()
ehlo = msg.decode()
print("--- SMTP EHLO:", ehlo.replace("\n", " | "))
check("SMTP advertises AUTH XOAUTH2 only", "AUTH XOAUTH2" in ehlo and "PLAIN" not in ehlo)
code, msg = s.docmd("MAIL", "FROM:<bsab@example.org>")
check(f"SMTP MAIL FROM before AUTH -> {code} {msg.decode()}", code == 530)
good = token("bot-bradford", "s3cret")
code, msg = s.docmd("AUTH", "XOAUTH2 " + base64.b64encode(xoauth2("bsab", "not-a-token")).decode())
check(f"SMTP AUTH XOAUTH2 unknown token -> {code} {msg.decode()}", code == 535 and b"5.7.3" in msg)
code, msg = s.docmd("AUTH", "XOAUTH2 " + base64.b64encode(xoauth2("bsab", other)).decode())
check(f"SMTP AUTH XOAUTH2 other user's token -> {code} {msg.decode()}", code == 535)
code, msg = s.docmd("AUTH", "XOAUTH2 " + base64.b64encode(xoauth2("bsab@example.org", good)).decode())
check(f"SMTP AUTH XOAUTH2 good token, user bsab@example.org -> {code} {msg.decode()}", code == 235)
code, msg = s.docmd("MAIL", "FROM:<bsab@example.org>")
check(f"SMTP MAIL FROM after AUTH -> {code} {msg.decode()}", code == 250)
code, msg = s.rcpt("nia.nurse@example.org")
code, msg = s.data(b"Subject: oauth\r\n\r\nhello\r\n")
check(f"SMTP delivery after AUTH -> {code} {msg.decode()}", code == 250)
m = imaplib.IMAP4("127.0.0.1", IMAP)
m.login("nia.nurse", "test-password")
typ, data = m.select("INBOX")
check(f"  and it reached nia.nurse's INBOX over LMTP: {data}", typ == "OK" and data == [b"1"])
m.logout()
s.quit()
s = smtplib.SMTP("127.0.0.1", SMTP)
s.ehlo()
long_tok = token("bot-bradford", "s3cret")  # and a realistic 2.5 kB bearer is not refused for length
code, msg = s.docmd("AUTH", "XOAUTH2 " + base64.b64encode(xoauth2("bsab", "x" * 2500)).decode())
check(f"SMTP AUTH XOAUTH2 with a 2.5 kB (unknown) token -> {code} {msg.decode()}", code == 535)
s.auth("XOAUTH2", lambda challenge=None: xoauth2("bsab", long_tok).decode(), initial_response_ok=True)
check("SMTP smtplib.auth('XOAUTH2') good token -> 235", True)
s.quit()
s = smtplib.SMTP("127.0.0.1", SMTP)
s.ehlo()
code, msg = s.docmd("AUTH", "XOAUTH2")
check(f"SMTP AUTH XOAUTH2 without initial response -> {code} {msg!r}", code == 334)
code, msg = s.docmd(base64.b64encode(xoauth2("bsab", good)).decode())
check(f"  then the response -> {code} {msg.decode()}", code == 235)
s.quit()
post("/control/revoke_all")
s = smtplib.SMTP("127.0.0.1", SMTP)
s.ehlo()
try:
    s.auth("XOAUTH2", lambda challenge=None: xoauth2("bsab", good).decode(), initial_response_ok=True)
    check("SMTP revoked token must fail", False)
except smtplib.SMTPAuthenticationError as e:
    check(f"SMTP revoked token -> {e.smtp_code} {e.smtp_error.decode()}", e.smtp_code == 535)
s.quit()
auth_log = open(os.path.join(tempfile.gettempdir(), f"escbot-smtp-{SMTP}", "auth-log")).read()
print("--- SMTP auth-log:\n" + auth_log.rstrip())
check("auth-log has a line per attempt",
      auth_log.splitlines() == ["fail bsab", "fail bsab", "ok bsab@example.org", "fail bsab", "ok bsab",
                                "ok bsab", "fail bsab"])

with urllib.request.urlopen(base + "/control/stats") as r:
    print("--- oauth stats:", r.read().decode())
print("FAILED: " + "; ".join(failures) if failures else "ALL PASSED")
sys.exit(1 if failures else 0)
PY

echo "--- dovecot.log (auth lines)"
grep -E "auth|oauth2|imap-login" "$d/dovecot.log" | grep -v "Debug" || true
echo "--- oauth_server.py log (last 10)"
tail -n 10 "$d/oauth.log"
rm -rf "${TMPDIR:-/tmp}/escbot-smtp-$smtp_port"
exit $status
