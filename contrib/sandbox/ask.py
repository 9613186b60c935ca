#!/usr/bin/env python3
"""ask - send one policy request per address to policyd and print the action.

    python3 contrib/sandbox/ask.py PORT ADDRESS... [--client IP]

A stdlib-only Postfix stand-in for trying the sandbox (`make run`): each
address is sent as an RCPT-state smtpd_access_policy request on one
connection, the way smtpd reuses its policy connection.  Each line shows
the address, how long the answer took (a tarpit delay shows here) and the
answer.
"""
import socket
import sys
import time


def main(argv):
    client = "192.0.2.10"
    if "--client" in argv:
        i = argv.index("--client")
        client = argv[i + 1]
        del argv[i:i + 2]
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    port, addrs = int(argv[0]), argv[1:]
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        f = s.makefile("rwb")
        for a in addrs:
            req = ("request=smtpd_access_policy\nprotocol_state=RCPT\n"
                   "protocol_name=ESMTP\nclient_address=%s\n"
                   "sender=someone@example.net\nrecipient=%s\n\n" % (client, a))
            t0 = time.monotonic()
            f.write(req.encode())
            f.flush()
            reply = []
            while True:
                line = f.readline()
                if not line or line == b"\n":
                    break
                reply.append(line.decode(errors="replace").rstrip("\n"))
            print("%-32s %6.2fs  %s" % (a, time.monotonic() - t0,
                                        " ".join(reply) or "(connection closed)"),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
