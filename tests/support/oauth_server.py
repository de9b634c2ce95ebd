#!/usr/bin/env python3
"""The test suite's OAuth2 server: a token endpoint shaped like Microsoft's identity platform (client
credentials grant, as an app registered in Entra ID / NHSmail gets its tokens) and an RFC 7662 introspection
endpoint for Dovecot's oauth2 passdb and tests/support/smtp_server.py --oauth2.
Usage: oauth_server.py PORT CLIENTS_JSON_FILE. Prints "ready" once listening; stops on SIGTERM.

CLIENTS_JSON_FILE maps client_id -> {"secret": "...", "username": "bsab"}: the mailbox user that the
client's tokens are good for; "certificate": a PEM file lets the client prove itself with a client assertion
signed by that certificate's key instead (RFC 7523, as Microsoft takes it; checked with `cryptography`).

Endpoints:
- POST /{tenant}/oauth2/v2.0/token, form-encoded grant_type=client_credentials, client_id, client_secret,
  scope. 200 {"token_type": "Bearer", "expires_in": N, "ext_expires_in": N, "access_token": "..."}, or the
  errors Microsoft answers (AADSTS codes): unknown client 400 unauthorized_client (AADSTS700016), wrong
  secret 401 invalid_client (AADSTS7000215), missing client_secret 401 invalid_client (AADSTS7000216),
  missing grant_type/scope/client_id 400 invalid_request (AADSTS900144), other grant types 400
  unsupported_grant_type (AADSTS70003). Any scope is accepted, and recorded.
- POST /introspect, form body token=... (Dovecot's introspection_mode = post; a JSON body and
  "Authorization: Bearer" are accepted too): {"active": true, "username": U, "scope": S, "exp": T, ...} for
  a live token; {"active": false} for a token revoked, expired or never issued (Dovecot 2.3.19 logs
  "oauth2 failed: Introspection failed: Provided token is not valid" and the client gets
  "NO [AUTHENTICATIONFAILED]").
- Control, for tests: POST /control/expires_in (body: seconds, for tokens issued from now on; default
  3600), POST /control/expire_all (every token issued so far is expired, though its client still believes
  it live), POST /control/revoke_all, POST /control/clients (body: JSON replacing the clients map),
  GET /control/stats -> {"issued", "introspected", "scopes", "active"}.
Each request is logged to stderr in one line."""
import json
import secrets
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


def aad_error(status, error, code, description, codes=None):
    """A Microsoft identity platform error body."""
    now = time.gmtime()
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description} "
        f"Trace ID: {uuid.uuid4()} Correlation ID: {uuid.uuid4()} "
        f"Timestamp: {time.strftime('%Y-%m-%d %H:%M:%SZ', now)}",
        "error_codes": codes or [code],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", now),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


class State:
    def __init__(self, clients):
        self.lock = threading.Lock()
        self.clients = clients
        self.expires_in = 3600
        # access token -> {"username", "scope", "client_id", "iat", "exp", "revoked"}
        self.tokens = {}
        self.issued = 0
        self.introspected = 0
        self.scopes = []

    def check_assertion(self, client, client_id, assertion, aud):
        """A client assertion (RFC 7523) as Microsoft checks it: RS256, signed by the certificate registered
        for the client (its SHA-1 thumbprint in x5t), for this token endpoint, for this client, in time.
        None when good, else the error answer."""
        import base64
        import hashlib
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64d(s):
            return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

        bad = lambda why: aad_error(
            401, "invalid_client", 700027,
            f"Client assertion contains an invalid signature. [Reason - {why}, Client id: '{client_id}']")
        try:
            h, p, sig = assertion.split(".")
            header, claims = json.loads(b64d(h)), json.loads(b64d(p))
        except ValueError:
            return aad_error(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
        if not client.get("certificate"):
            return bad("The key was not found.")
        with open(client["certificate"], "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        der = cert.public_bytes(serialization.Encoding.DER)
        x5t = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
        if header.get("alg") != "RS256" or header.get("x5t") != x5t:
            return bad("The key was not found.")
        try:
            cert.public_key().verify(b64d(sig), f"{h}.{p}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return bad("The signature does not match.")
        now = int(time.time())
        if claims.get("iss") != client_id or claims.get("sub") != client_id or claims.get("aud") != aud:
            return aad_error(401, "invalid_client", 700021,
                             f"Client assertion application identifier doesn't match 'client_id' parameter, "
                             f"or the audience is not {aud}.")
        if not (claims.get("nbf", 0) - 300 <= now < claims.get("exp", 0)):
            return aad_error(401, "invalid_client", 700024, "Client assertion is not within its valid time range.")
        return None

    def issue(self, tenant, form, aud=""):
        first = lambda k: (form.get(k) or [""])[0]
        grant_type, client_id = first("grant_type"), first("client_id")
        secret, scope = first("client_secret"), first("scope")
        with self.lock:
            if not grant_type:
                return aad_error(400, "invalid_request", 900144,
                                 "The request body must contain the following parameter: 'grant_type'.")
            if grant_type != "client_credentials":
                return aad_error(400, "unsupported_grant_type", 70003,
                                 f"The app requested an unsupported grant type '{grant_type}'.")
            if not client_id:
                return aad_error(400, "invalid_request", 900144,
                                 "The request body must contain the following parameter: 'client_id'.")
            if not scope:
                return aad_error(400, "invalid_request", 900144,
                                 "The request body must contain the following parameter: 'scope'.")
            client = self.clients.get(client_id)
            if client is None:
                return aad_error(
                    400, "unauthorized_client", 700016,
                    f"Application with identifier '{client_id}' was not found in the directory "
                    f"'{tenant}'. This can happen if the application has not been installed by the "
                    "administrator of the tenant or consented to by any user in the tenant. You may "
                    "have sent your authentication request to the wrong tenant.")
            assertion = first("client_assertion")
            if assertion:
                if first("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                    return aad_error(400, "invalid_request", 90002, "Invalid client_assertion_type.")
                refused = self.check_assertion(client, client_id, assertion, aud)
                if refused:
                    return refused
            elif not secret:
                return aad_error(
                    401, "invalid_client", 7000216,
                    "'client_assertion', 'client_secret' or 'request' is required for the "
                    "'client_credentials' grant type.")
            elif secret != client.get("secret"):
                return aad_error(
                    401, "invalid_client", 7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the "
                    f"client secret value, not the client secret ID, for a secret added to app '{client_id}'.")
            token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48)
            now = int(time.time())
            self.tokens[token] = {
                "username": client.get("username", ""),
                "scope": scope,
                "client_id": client_id,
                "iat": now,
                "exp": now + self.expires_in,
                "revoked": False,
            }
            self.issued += 1
            self.scopes.append(scope)
            return 200, {
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "ext_expires_in": self.expires_in,
                "access_token": token,
            }

    def live(self, t, now):
        return not t["revoked"] and t["exp"] > now

    def introspect(self, token):
        with self.lock:
            self.introspected += 1
            t = self.tokens.get(token)
            if t is None or not self.live(t, time.time()):
                return {"active": False}
            return {
                "active": True,
                "username": t["username"],
                "scope": t["scope"],
                "client_id": t["client_id"],
                "token_type": "Bearer",
                "iat": t["iat"],
                "exp": t["exp"],
            }

    def stats(self):
        with self.lock:
            now = time.time()
            return {
                "issued": self.issued,
                "introspected": self.introspected,
                "scopes": list(self.scopes),
                "active": sum(1 for t in self.tokens.values() if self.live(t, now)),
            }


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Dovecot's HTTP client expects to reuse connections
        server_version = "escbot-oauth/1"

        note = ""  # what the request came to, for the log line

        def log_request(self, code="-", size="-"):
            code = getattr(code, "value", code)
            self.log_message("%s %s %s %s", self.command, self.path, code, self.note)

        def log_message(self, fmt, *args):
            sys.stderr.write(f"oauth_server: {fmt % args}\n".replace("  ", " "))
            sys.stderr.flush()

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n > 0 else b""

        def reply(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.note = ""
            path = urlsplit(self.path).path
            if path == "/control/stats":
                return self.reply(200, state.stats())
            if path == "/introspect":  # introspection_mode = get / auth, should a test use them
                q = parse_qs(urlsplit(self.path).query)
                token = (q.get("token") or [""])[0] or self.bearer()
                return self.reply(200, state.introspect(token))
            self.reply(404, {"error": "not_found"})

        def bearer(self):
            auth = self.headers.get("Authorization") or ""
            return auth[7:].strip() if auth.lower().startswith("bearer ") else ""

        def do_POST(self):
            self.note = ""
            path = urlsplit(self.path).path
            raw = self.body()
            parts = path.strip("/").split("/")
            if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
                form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
                aud = "http://%s%s" % (self.headers.get("Host", ""), path)
                status, obj = state.issue(parts[0], form, aud)
                self.note = "client_id=%s scope=%s %s" % (
                    (form.get("client_id") or ["-"])[0], (form.get("scope") or ["-"])[0],
                    "issued" if status == 200 else obj["error"])
                return self.reply(status, obj)
            if path == "/introspect":
                text = raw.decode("utf-8", "replace")
                token = ""
                if (self.headers.get("Content-Type") or "").startswith("application/json"):
                    try:
                        token = json.loads(text).get("token", "")
                    except (ValueError, AttributeError):
                        pass
                else:
                    token = (parse_qs(text).get("token") or [""])[0]
                token = token or self.bearer()
                answer = state.introspect(token)
                self.note = "active=%s username=%s" % (answer["active"], answer.get("username", "-"))
                return self.reply(200, answer)
            if path == "/control/expires_in":
                try:
                    seconds = int(raw.decode().strip())
                except ValueError:
                    return self.reply(400, {"error": "body must be an integer"})
                with state.lock:
                    state.expires_in = seconds
                return self.reply(200, {"expires_in": seconds})
            if path == "/control/expire_all":
                with state.lock:
                    past = int(time.time()) - 1
                    for t in state.tokens.values():
                        t["exp"] = min(t["exp"], past)
                return self.reply(200, {"ok": True})
            if path == "/control/revoke_all":
                with state.lock:
                    for t in state.tokens.values():
                        t["revoked"] = True
                return self.reply(200, {"ok": True})
            if path == "/control/clients":
                try:
                    clients = json.loads(raw.decode())
                    assert isinstance(clients, dict)
                except (ValueError, AssertionError):
                    return self.reply(400, {"error": "body must be a JSON object"})
                with state.lock:
                    state.clients = clients
                return self.reply(200, {"ok": True})
            self.reply(404, {"error": "not_found"})

    return Handler


def main():
    port, clients_file = int(sys.argv[1]), sys.argv[2]
    with open(clients_file) as f:
        state = State(json.load(f))
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
