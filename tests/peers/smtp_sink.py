"""A real SMTP server (aiosmtpd) that stands in for the program's outbound
mail relay in tests. Usage: smtp_sink.py OUT_DIR CERT KEY [FAIL_FIRST]
Listens on 127.0.0.1 (a free port, printed on stdout as "port N"), requires
STARTTLS with CERT/KEY, and writes each message it receives to OUT_DIR as
N.eml, with the envelope in N.env ("MAIL FROM" then each RCPT TO). With
FAIL_FIRST=k the first k messages get a 451 (a temporary failure)."""

import asyncio
import pathlib
import socket
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, out: pathlib.Path, fail_first: int) -> None:
        self.out = out
        self.fail_first = fail_first
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.fail_first > 0:
            self.fail_first -= 1
            return "451 4.3.0 Try again later"
        if not session.ssl:
            return "530 5.7.0 Must issue a STARTTLS command first"
        self.count += 1
        n = self.count
        (self.out / f"{n}.eml.part").write_bytes(envelope.original_content)
        (self.out / f"{n}.env").write_text(
            "\n".join([envelope.mail_from, *envelope.rcpt_tos]) + "\n"
        )
        (self.out / f"{n}.eml.part").rename(self.out / f"{n}.eml")
        return "250 2.0.0 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    cert, key = sys.argv[2], sys.argv[3]
    fail_first = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    port = free_port()
    controller = Controller(
        Sink(out, fail_first),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        decode_data=False,
    )
    controller.start()
    print(f"port {port}", flush=True)
    try:
        sys.stdin.read()  # runs until the test closes our stdin or kills us
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
