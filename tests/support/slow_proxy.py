"""A TCP proxy on loopback that can hold back the server's next reply, to make a reply time out."""

from __future__ import annotations

import socket
import threading
import time


class SlowProxy:
    """Forwards 127.0.0.1:`port` to `target`; `delay_next_reply(s)` holds the next server chunk."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._delay = 0.0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def delay_next_reply(self, seconds: float) -> None:
        with self._lock:
            self._delay = seconds

    def _take_delay(self) -> float:
        with self._lock:
            delay, self._delay = self._delay, 0.0
            return delay

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if replies and (delay := self._take_delay()):
                    time.sleep(delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        for s in self._sockets:
            s.close()
