"""A real SMTP server for the email tests (aiosmtpd): saves each message
as accepted-NNNN.eml (or refused-NNNN.eml) in a folder.

  smtp_sink.py --port P --folder DIR [--fail-first N] [--tlscert C --tlskey K] [--auth USER:PASS]

--fail-first N answers the first N messages with "451 try again later" (a
transient failure), so the client's retry is exercised. With a certificate,
STARTTLS is offered and required. Prints READY when listening; runs until
killed or stdin closes.
"""
import argparse
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, folder, fail_first):
        self.folder = folder
        self.fail_first = fail_first
        self.saved = 0

    async def handle_DATA(self, server, session, envelope):
        self.saved += 1
        refuse = self.fail_first > 0
        kind = "refused" if refuse else "accepted"
        path = os.path.join(self.folder, f"{kind}-{self.saved:04d}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(b"X-Envelope-To: " + ", ".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(b"X-Tls: " + (b"yes" if session.ssl else b"no") + b"\r\n")
            f.write(envelope.original_content)
        os.rename(path + ".tmp", path)
        if refuse:
            self.fail_first -= 1
            return "451 4.3.0 try again later"
        return "250 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--folder", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--tlscert")
    p.add_argument("--tlskey")
    p.add_argument("--auth")
    a = p.parse_args()
    kwargs = {}
    if a.tlscert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tlscert, a.tlskey)
        kwargs.update(tls_context=ctx, require_starttls=True)
    if a.auth:
        user, password = a.auth.split(":", 1)

        def check(server, session, envelope, mechanism, data):
            ok = data.login == user.encode() and data.password == password.encode()
            return AuthResult(success=ok)

        kwargs.update(authenticator=check, auth_required=True)
    c = Controller(Sink(a.folder, a.fail_first), hostname="127.0.0.1", port=a.port, **kwargs)
    c.start()
    print("READY", flush=True)
    try:
        sys.stdin.read()
    finally:
        c.stop()


if __name__ == "__main__":
    main()
