"""Sends one message with Python's smtplib, a client independent of tipwire's
Rust stack. Usage: smtp_send.py HOST PORT CA_FILE MAIL_FROM RCPT_TO < message
The message bytes come on stdin. Upgrades with STARTTLS, trusting CA_FILE.
Prints "sent 250" when the message was accepted (smtplib raises on any other
answer to DATA; the 250 printed is the NOOP's that follows, proving the
session still works), or "refused CODE TEXT" with the server's refusal."""

import smtplib
import ssl
import sys


def main() -> None:
    host, port, ca_file, mail_from, rcpt_to = sys.argv[1:6]
    message = sys.stdin.buffer.read()
    context = ssl.create_default_context(cafile=ca_file)
    with smtplib.SMTP(host, int(port), timeout=30) as client:
        client.ehlo("client.example")
        client.starttls(context=context)
        client.ehlo("client.example")
        try:
            client.sendmail(mail_from, [rcpt_to], message)
        except smtplib.SMTPResponseException as e:
            print(f"refused {e.smtp_code} {e.smtp_error.decode()}")
            return
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients[rcpt_to]
            print(f"refused {code} {text.decode()}")
            return
        code, text = client.noop()
        print(f"sent {code}")


if __name__ == "__main__":
    main()
