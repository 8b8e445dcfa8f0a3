"""TCP proxies on the links between an ensemble's members, so a test can break the network
between processes without root (no netfilter): run.py --proxy puts one on every directed link
and points each member's view of the others at them.

A `LinkProxy` forwards connections that member `src` opens towards member `dst`. Its faults:

- cut: nothing passes either way; connections stay open but what is written into them is
  thrown away (as a partition does: the ends time out rather than being reset), and they are
  closed when the cut heals (their streams have lost bytes), so the ends redial;
- delay: every chunk is held back that long (order kept);
- drop: each chunk is lost with that probability, taking its connection with it (a stream
  cannot lose a message and go on), so the ends redial.

A proxy may rewrite the first message a dialler sends (`first`): ZooKeeper's election
connections open with the dialler's own election address, which a member of higher id dials
back instead of keeping the connection (QuorumCnxManager.handleConnection); rewritten to the
proxy of the link back, that connection goes through a proxy too.

Everything is bounded: at most MAX_CONNECTIONS open per proxy, a chunk is at most 64 KiB and
at most MAX_QUEUED_BYTES wait per direction (then the reader waits); a first message is
looked for in the first MAX_FIRST bytes only.
"""

import random
import socket
import struct
import threading
import time
from collections import deque

CHUNK = 65536
MAX_CONNECTIONS = 64
MAX_QUEUED_BYTES = 8 << 20
MAX_FIRST = 8192


def zookeeper_election_address(address):
    """A rewriter of ZooKeeper's election initial message (`long protocolVersion; long sid;
    int length; byte[length] address`, QuorumCnxManager.startConnection) that puts
    `address()` in place of the dialler's own. The old protocol (a non-negative first long:
    the sid alone) carries no address and passes unchanged. It returns None while more bytes
    are needed."""

    def rewrite(buf):
        if len(buf) < 8:
            return None
        if struct.unpack(">q", buf[:8])[0] >= 0:
            return buf
        if len(buf) < 20:
            return None
        n = struct.unpack(">i", buf[16:20])[0]
        if n < 0 or n > MAX_FIRST:
            return buf
        if len(buf) < 20 + n:
            return None
        addr = address().encode()
        return buf[:16] + struct.pack(">i", len(addr)) + addr + buf[20 + n:]

    return rewrite


class _Pipe:
    """One direction of one connection: a reader thread queues chunks, a writer delivers them."""

    def __init__(self, conn, src, dst, first=None):
        self.conn, self.src, self.dst = conn, src, dst
        # Rewrites the first message read (see zookeeper_election_address).
        self.first, self.head = first, b""
        self.queue = deque()
        self.queued = 0
        self.cond = threading.Condition()

    def start(self):
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self):
        while not self.conn.closed:
            try:
                data = self.src.recv(CHUNK)
            except OSError:
                data = b""
            if not data:
                self.conn.close()
                return
            if self.first is not None:
                self.head += data
                out = self.first(self.head)
                if out is None and len(self.head) < MAX_FIRST:
                    continue
                data, self.first, self.head = (out if out is not None else self.head), None, b""
            cut, delay, drop = self.conn.faults()
            if self.conn.poisoned and not cut:
                # Broken by a cut that has healed since (a heal racing this reader): close it
                # so that its ends redial.
                self.conn.close()
                return
            if cut or self.conn.poisoned:
                self.conn.poisoned = True
                continue
            if drop and random.random() < drop:
                self.conn.close()
                return
            with self.cond:
                while self.queued > MAX_QUEUED_BYTES and not self.conn.closed:
                    self.cond.wait(0.1)
                self.queue.append((time.monotonic() + delay, data))
                self.queued += len(data)
                self.cond.notify_all()

    def _write(self):
        while True:
            with self.cond:
                while not self.queue and not self.conn.closed:
                    self.cond.wait(0.1)
                if self.conn.closed:
                    return
                at, data = self.queue.popleft()
                self.queued -= len(data)
                self.cond.notify_all()
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self.conn.poisoned:
                continue
            try:
                self.dst.sendall(data)
            except OSError:
                self.conn.close()
                return


class _Connection:
    def __init__(self, proxy, client, upstream, first=None):
        self.proxy, self.client, self.upstream, self.first = proxy, client, upstream, first
        self.closed = False
        # Set once a cut threw bytes away: the stream is broken, close it when healed.
        self.poisoned = False
        self.lock = threading.Lock()

    def start(self):
        _Pipe(self, self.client, self.upstream, self.first).start()
        _Pipe(self, self.upstream, self.client).start()

    def faults(self):
        """The proxy's faults; a cut poisons this connection in the same step, under the
        proxy's lock, so that a heal cannot miss it."""
        return self.proxy.faults(poison=self)

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.proxy.forget(self)


class LinkProxy:
    """Listens on 127.0.0.1:`port` and forwards to 127.0.0.1:`target` (member src -> dst);
    `first` rewrites what the dialler sends first."""

    def __init__(self, src, dst, port, target, first=None):
        self.src, self.dst, self.port, self.target = src, dst, port, target
        self.first = first
        self.lock = threading.Lock()
        self.cut = False
        self.delay = 0.0
        self.drop = 0.0
        self.conns = set()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(16)
        self.listener.settimeout(0.5)
        self.closing = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def faults(self, poison=None):
        with self.lock:
            if poison is not None and self.cut:
                poison.poisoned = True
            return self.cut, self.delay, self.drop

    def set_faults(self, cut=None, delay=None, drop=None):
        with self.lock:
            if cut is not None:
                self.cut = cut
            if delay is not None:
                self.delay = delay
            if drop is not None:
                self.drop = drop

    def heal(self):
        """Clears every fault; connections a cut broke are closed so their ends redial."""
        with self.lock:
            self.cut, self.delay, self.drop = False, 0.0, 0.0
            broken = [c for c in self.conns if c.poisoned]
        for c in broken:
            c.close()

    def forget(self, conn):
        with self.lock:
            self.conns.discard(conn)

    def _accept(self):
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                full = len(self.conns) >= MAX_CONNECTIONS
            if full:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
                upstream.settimeout(None)
            except OSError:
                # Nothing listens there (the member is down): the dialler sees a close.
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client, upstream, self.first)
            with self.lock:
                # Under the lock, so that a heal sees it whether or not it is cut.
                conn.poisoned = self.cut
                self.conns.add(conn)
            conn.start()

    def close(self):
        self.closing.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.close()


class Links:
    """Every directed link's proxies: {(src, dst): [LinkProxy, ...]} (one per port)."""

    def __init__(self):
        self.proxies = {}

    def add(self, src, dst, port, target, first=None):
        self.proxies.setdefault((src, dst), []).append(LinkProxy(src, dst, port, target, first))

    def on(self, src, dst):
        return self.proxies.get((src, dst), [])

    def heal(self):
        for ps in self.proxies.values():
            for p in ps:
                p.heal()

    def close(self):
        for ps in self.proxies.values():
            for p in ps:
                p.close()
