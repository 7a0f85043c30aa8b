"""A Web Push endpoint standing in for a phone's push service and the phone
itself, in tests. Usage: push_endpoint.py OUT_FILE

Listens on 127.0.0.1 (a free port). Prints "port N" on the first stdout line
and, on the second, the JSON of a PushSubscription for a fresh P-256 key pair
and auth secret, with the endpoint http://127.0.0.1:N/push/<random>.

For each POST it decrypts the body with http_ece (RFC 8188 aes128gcm, RFC 8291
keys), checks the VAPID Authorization header (RFC 8292: an ES256 JWT signed by
the k= key, aud = this server's origin, exp in the future and at most 24 hours
ahead, sub present) with PyJWT, and appends one JSON line to OUT_FILE:
{"path", "plaintext", "decrypt_error", "vapid_ok", "vapid_error", "ttl",
"urgency", "content_encoding", "content_type", "status"}. It answers 201,
except:
  - 410 when the path ends in /gone (a subscription the push service dropped);
  - 503 with Retry-After: 0 to the first FLAKY requests (default 2) to each
    path ending in /flaky, 201 after (a service that recovers);
  - 201 after 1.5 seconds when the path ends in /slow (to stop a sender
    mid-request).
Usage with a count: push_endpoint.py OUT_FILE [FLAKY]."""

import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

MAX_BODY = 8192


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_vapid(header: str, origin: str) -> None:
    """Raises ValueError (or a PyJWT error) unless `header` is valid VAPID."""
    scheme, _, params = header.partition(" ")
    if scheme.lower() != "vapid":
        raise ValueError(f"scheme {scheme!r}, not vapid")
    fields = {}
    for part in params.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise ValueError(f"parameter without '=': {part!r}")
        fields[name] = value
    if set(fields) != {"t", "k"}:
        raise ValueError(f"parameters {sorted(fields)}, want t and k")
    point = b64url_decode(fields["k"])
    if len(point) != 65 or point[0] != 4:
        raise ValueError("k is not an uncompressed P-256 point")
    public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    token = fields["t"]
    header_fields = jwt.get_unverified_header(token)
    if header_fields != {"typ": "JWT", "alg": "ES256"}:
        raise ValueError(f"JWT header {header_fields}")
    claims = jwt.decode(
        token,
        public_key,
        algorithms=["ES256"],
        audience=origin,
        options={"require": ["aud", "exp", "sub"]},
    )
    if claims["exp"] > time.time() + 24 * 3600:
        raise ValueError("exp more than 24 hours ahead")
    sub = claims["sub"]
    if not (isinstance(sub, str) and (sub.startswith("mailto:") or sub.startswith("https:"))):
        raise ValueError(f"sub {sub!r}")


class Endpoint(BaseHTTPRequestHandler):
    # Set on the class by main().
    private_key = None
    auth_secret = b""
    origin = ""
    out = ""
    lock = threading.Lock()
    flaky_failures = 2
    flaky_seen: dict = {}

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("Content-Length", "0"))
        content = self.rfile.read(min(length, MAX_BODY))
        record = {
            "path": self.path,
            "plaintext": None,
            "decrypt_error": None,
            "vapid_ok": False,
            "vapid_error": None,
            "ttl": self.headers.get("TTL"),
            "urgency": self.headers.get("Urgency"),
            "content_encoding": self.headers.get("Content-Encoding"),
            "content_type": self.headers.get("Content-Type"),
        }
        try:
            plaintext = http_ece.decrypt(
                content,
                private_key=self.private_key,
                auth_secret=self.auth_secret,
                version="aes128gcm",
            )
            record["plaintext"] = plaintext.decode("utf-8")
        except Exception as e:  # noqa: BLE001 (recorded for the test to show)
            record["decrypt_error"] = repr(e)
        try:
            check_vapid(self.headers.get("Authorization", ""), self.origin)
            record["vapid_ok"] = True
        except Exception as e:  # noqa: BLE001
            record["vapid_error"] = repr(e)
        status = 201
        retry_after = None
        with self.lock:
            if self.path.endswith("/gone"):
                status = 410
            elif self.path.endswith("/flaky"):
                seen = self.flaky_seen.get(self.path, 0)
                self.flaky_seen[self.path] = seen + 1
                if seen < self.flaky_failures:
                    status, retry_after = 503, "0"
            record["status"] = status
            with open(self.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
        if self.path.endswith("/slow"):
            time.sleep(1.5)
        try:
            self.send_response(status)
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up waiting (the /slow case)

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


def main() -> None:
    Endpoint.out = sys.argv[1]
    if len(sys.argv) > 2:
        Endpoint.flaky_failures = int(sys.argv[2])
    Endpoint.private_key = ec.generate_private_key(ec.SECP256R1())
    Endpoint.auth_secret = os.urandom(16)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    port = server.server_address[1]
    Endpoint.origin = f"http://127.0.0.1:{port}"
    public = Endpoint.private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    subscription = {
        "endpoint": f"{Endpoint.origin}/push/{b64url(os.urandom(24))}",
        "expirationTime": None,
        "keys": {"p256dh": b64url(public), "auth": b64url(Endpoint.auth_secret)},
    }
    print(f"port {port}", flush=True)
    print(json.dumps(subscription), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
