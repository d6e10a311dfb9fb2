"""Reads a saved message with Python's standard MIME parser and prints what
the email tests assert on, as JSON."""
import email
import email.policy
import json
import sys

with open(sys.argv[1], "rb") as f:
    msg = email.message_from_binary_file(f, policy=email.policy.default)
parts = [p for p in msg.walk() if not p.is_multipart()]
print(json.dumps({
    "from": str(msg["From"]),
    "to": str(msg["To"]),
    "cc": str(msg["Cc"]) if msg["Cc"] else None,
    "subject": str(msg["Subject"]),
    "message_id": str(msg["Message-ID"]),
    "envelope_to": str(msg["X-Envelope-To"]),
    "tls": str(msg["X-Tls"]),
    "content_type": msg.get_content_type(),
    "parts": [p.get_content_type() for p in parts],
    "text": msg.get_body(preferencelist=("plain",)).get_content(),
    "html": msg.get_body(preferencelist=("html",)).get_content(),
}))
