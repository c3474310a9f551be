#!/usr/bin/env python3
"""A PostgreSQL wire proxy that loses the answer to one COMMIT.

Listens on 127.0.0.1:PORT and passes every connection on to the server's
unix socket, byte for byte. While the file TRIGGER exists, the next
transaction that wrote jobs (a simple query "COPY jobs ...") is let through
up to and including its COMMIT (extended protocol, up to Sync); the proxy
then waits for the server to commit and closes both sides before the
answer reaches the client: the commit happened, the client cannot know.
It then removes TRIGGER and writes DROPPED. The connection must use
sslmode=disable and gssencmode=disable (no encryption to look through).

usage: pg_commit_drop.py PORT SERVER_SOCKET TRIGGER DROPPED
"""
import os
import socket
import struct
import sys
import threading
import time


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def pump(src, dst, hold):
    """Server to client: bytes as they come, until hold is set (then the
    answer is dropped)."""
    try:
        while True:
            data = src.recv(65536)
            if not data or hold.is_set():
                break
            dst.sendall(data)
    except OSError:
        pass


def client_side(cli, srv, hold, trigger, dropped):
    """Client to server, message by message, watching for the COMMIT."""
    try:
        length = struct.unpack("!I", read_exact(cli, 4))[0]   # startup packet
        srv.sendall(struct.pack("!I", length) + read_exact(cli, length - 4))
        wrote_jobs = committing = False
        while True:
            head = read_exact(cli, 5)
            kind, length = head[:1], struct.unpack("!I", head[1:])[0]
            body = read_exact(cli, length - 4)
            if kind == b"Q" and body.startswith(b"COPY jobs "):
                wrote_jobs = True
            elif kind == b"P" and b"COMMIT" in body:
                committing = wrote_jobs and os.path.exists(trigger)
                wrote_jobs = False
            elif kind == b"S" and committing:
                hold.set()                                       # no answer goes back
                srv.sendall(head + body)
                time.sleep(0.3)                                  # the server commits
                os.remove(trigger)
                with open(dropped, "w") as f:
                    f.write("dropped\n")
                break
            srv.sendall(head + body)
    except (EOFError, OSError):
        pass
    for s in (cli, srv):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    port, server, trigger, dropped = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(16)
    while True:
        cli, _ = lsock.accept()
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            srv.connect(server)
        except OSError:
            cli.close()
            continue
        hold = threading.Event()
        threading.Thread(target=pump, args=(srv, cli, hold), daemon=True).start()
        threading.Thread(target=client_side, args=(cli, srv, hold, trigger, dropped),
                         daemon=True).start()


if __name__ == "__main__":
    main()
