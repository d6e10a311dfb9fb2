"""Verifies a kyc-sentinel webhook signature: the procedure the README documents.

Usage: verify_signature.py SECRET HEADER_VALUE BODY_FILE [MAX_AGE_SECONDS]
Exit 0 when valid, 1 (with the reason) when not.
"""
import hashlib
import hmac
import sys
import time


def verify(secret: bytes, header: str, body: bytes, max_age: int = 300) -> None:
    parts = dict(p.split("=", 1) for p in header.split(","))
    ts, sig = parts["t"], parts["v1"]
    if abs(time.time() - int(ts)) > max_age:
        raise ValueError("timestamp too old: a replay?")
    expected = hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig):
        raise ValueError("signature mismatch")


if __name__ == "__main__":
    secret, header, body_file = sys.argv[1], sys.argv[2], sys.argv[3]
    max_age = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    with open(body_file, "rb") as f:
        body = f.read()
    try:
        verify(secret.encode(), header, body, max_age)
    except (ValueError, KeyError) as e:
        print(f"invalid: {e}")
        sys.exit(1)
    print("valid")
