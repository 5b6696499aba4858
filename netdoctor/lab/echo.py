"""A who-am-I server for lab workloads: every TCP connection and UDP datagram is answered with
`<hostname> <client ip>:<client port>`, so a test or a user sees which backend answered and
which source address reached it (after kube-proxy's DNAT, and SNAT when there is one).

Run by the zoo scenario's pods as `python3 -m netdoctor.lab.echo --tcp 8080 --udp 8125`. TCP
speaks just enough HTTP: it reads the request for a moment (or nothing, for a bare connect),
answers `HTTP/1.0 200` with that line as the body and closes. Runs until killed (SIGTERM).
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import threading

READ_SECONDS = 0.3  # how long a TCP client may take to send its request
_BACKLOG = 64


def identity(peer: tuple[str, int]) -> bytes:
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()} {peer[0]}:{peer[1]}\n".encode()


def answer_tcp(conn: socket.socket, peer: tuple[str, int]) -> None:
    with conn:
        conn.settimeout(READ_SECONDS)
        try:
            conn.recv(4096)
        except TimeoutError:
            pass  # a bare connect: answer anyway
        except OSError:
            return  # reset by the client: no one to answer
        body = identity(peer)
        head = f"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
        try:
            conn.sendall(head.encode() + body)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            return  # the client left before the answer: nothing to tell it


def serve(tcp_ports: list[int], udp_ports: list[int]) -> None:
    with selectors.DefaultSelector() as sel:
        for port in tcp_ports:
            server = socket.create_server(("0.0.0.0", port), backlog=_BACKLOG)
            sel.register(server, selectors.EVENT_READ, _accept)
        for port in udp_ports:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("0.0.0.0", port))
            sel.register(udp, selectors.EVENT_READ, _reply)
        while True:
            for key, _ in sel.select():
                key.data(key.fileobj)


def _accept(server: socket.socket) -> None:
    conn, peer = server.accept()
    threading.Thread(target=answer_tcp, args=(conn, peer), daemon=True).start()


def _reply(udp: socket.socket) -> None:
    _, peer = udp.recvfrom(65535)
    udp.sendto(identity(peer), peer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netdoctor.lab.echo", description=__doc__.splitlines()[0])
    parser.add_argument("--tcp", type=int, action="append", default=[], help="a TCP port to answer on")
    parser.add_argument("--udp", type=int, action="append", default=[], help="a UDP port to answer on")
    args = parser.parse_args(argv)
    if not args.tcp and not args.udp:
        parser.error("give at least one --tcp or --udp port")
    serve(args.tcp, args.udp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
