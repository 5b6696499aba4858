"""The lab's HTTPS API server: stdlib ThreadingHTTPServer + TLS, bearer auth, JSON, watch, exec.

Started by the lab daemon in the root namespace on 127.0.0.1. HTTP plumbing only: authentication,
reading bodies and writing replies (JSON, chunked watch streams, WebSocket upgrades); what a request
means is decided by `routes.Routes`. Every failure leaves as a Kubernetes Status with its code.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from netdoctor.lab.api import auth, streaming, websocket
from netdoctor.lab.api.pki import TlsFiles
from netdoctor.lab.api.routes import (
    ExecReply,
    Reply,
    Request,
    Routes,
    Runtime,
    WatchReply,
)
from netdoctor.lab.api.status import ApiError
from netdoctor.lab.api.store import Store
from netdoctor.lab.api.watch import WatchHub

log = logging.getLogger(__name__)
MAX_BODY = 16 * 1024 * 1024


class ApiServer:
    def __init__(self, store: Store, runtime: Runtime, tls: TlsFiles, tokens: Mapping[str, str],
                 host: str = "127.0.0.1", port: int = 0):
        self._store = store
        self._runtime = runtime
        self._tls = tls
        self._tokens = dict(tokens)
        self._address = (host, port)
        self._http: _HttpServer | None = None
        self._hub: WatchHub | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Listen and serve in daemon threads; returns the bound port."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._tls.cert, self._tls.key)
        self._hub = WatchHub(self._store)
        self._http = _HttpServer(self._address, context, self._tokens)
        port = self._http.server_address[1]
        self._http.routes = Routes(self._store, self._runtime, self._hub, f"{self._address[0]}:{port}")
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), name="lab-api", daemon=True)
        self._thread.start()
        return port

    def stop(self) -> None:
        """Stop accepting, end watches and drop open connections."""
        if self._http is None:
            return
        self._hub.close()
        self._http.shutdown()
        self._http.drop_connections()
        self._http.server_close()
        self._thread.join()
        self._http = None


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # listen()'s backlog: socketserver's 5 drops the SYNs of a burst of connections (a check's
    # dozen execs at once), each then retried a second later; Go's listener, the kube-apiserver's,
    # asks for the kernel's maximum.
    request_queue_size = socket.SOMAXCONN
    routes: Routes

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, tokens: Mapping[str, str]):
        super().__init__(address, _Handler)
        self.context = context
        self.tokens = tokens
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def finish_request(self, request, client_address) -> None:
        """TLS handshake in the connection's own thread, so one slow client can't stall accept()."""
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        with self._connections_lock:
            self._connections.add(tls)
        try:
            super().finish_request(tls, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(tls)

    def drop_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError as exc:
                log.debug("closing a lab API connection: %s", exc)

    def handle_error(self, request, client_address) -> None:
        log.exception("lab API connection from %s failed", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: don't wait on delayed ACKs
    server: _HttpServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _serve(self) -> None:
        try:
            request = Request(self.command, self.path, self.headers, self._body())
            user = None
            if request.path not in ("/version", "/healthz", "/readyz", "/livez"):
                user = auth.authenticate(self.headers.get("Authorization"), self.server.tokens)
            reply = self.server.routes.handle(request, user)
        except ApiError as exc:
            reply = Reply(exc.code, exc.status())
        except Exception as exc:  # a bug must still answer with a Status, and be logged
            log.exception("lab API request %s %s failed", self.command, self.path)
            reply = Reply(500, ApiError(500, f"Internal error occurred: {exc}").status())
        if isinstance(reply, WatchReply):
            self._send_watch(reply)
        elif isinstance(reply, ExecReply):
            self._send_exec(reply)
        else:
            self._send(reply)

    def _body(self) -> bytes:
        size = int(self.headers.get("Content-Length") or 0)
        if size > MAX_BODY:
            raise ApiError(413, "Request entity too large", reason="RequestEntityTooLarge")
        return self.rfile.read(size) if size else b""

    def _send(self, reply: Reply) -> None:
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.code)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_watch(self, reply: WatchReply) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for event in reply.events:
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, ssl.SSLError) as exc:
            log.debug("watch client went away: %s", exc)
            self.close_connection = True

    def _send_exec(self, reply: ExecReply) -> None:
        protocol = websocket.choose_subprotocol(self.headers.get("Sec-WebSocket-Protocol"), streaming.SUBPROTOCOLS)
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", websocket.accept_key(self.headers.get("Sec-WebSocket-Key") or ""))
        if protocol:
            self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        reader = streaming.SocketReader(self.connection)
        conn = websocket.Connection(reader, self.wfile)
        try:
            streaming.run_exec(conn, reader, reply.start, reply.binary, reply.channels, protocol)
        except (ConnectionError, ssl.SSLError) as exc:
            log.debug("exec client went away: %s", exc)
