"""A minimal ZooKeeper client over a plain socket, for the few requests kazoo 2.11 cannot send.

kazoo 2.11 has no createContainer (19), createTTL (21) nor addWatch (106, persistent and
persistent-recursive watches). This speaks ZooKeeper's documented jute wire format for those and
a handful of plain requests, one session on one server, with bounded waits everywhere. It does
not reconnect: a test that uses it runs while the server it talks to stays up.
"""

import queue
import socket
import struct
import threading

# Opcodes (ZooDefs.OpCode).
CREATE = 1
DELETE = 2
EXISTS = 3
GET_DATA = 4
SET_DATA = 5
GET_CHILDREN = 8
SYNC = 9
PING = 11
CREATE2 = 15
CREATE_CONTAINER = 19
CREATE_TTL = 21
ADD_WATCH = 106
SET_WATCHES = 101
SET_WATCHES2 = 105
CLOSE_SESSION = -11

# CreateMode flags.
PERSISTENT = 0
EPHEMERAL = 1
PERSISTENT_SEQUENTIAL = 2
EPHEMERAL_SEQUENTIAL = 3
CONTAINER = 4
PERSISTENT_WITH_TTL = 5
PERSISTENT_SEQUENTIAL_WITH_TTL = 6

# AddWatchMode.
MODE_PERSISTENT = 0
MODE_PERSISTENT_RECURSIVE = 1

# Watcher.Event.EventType.
NODE_CREATED = 1
NODE_DELETED = 2
NODE_DATA_CHANGED = 3
NODE_CHILDREN_CHANGED = 4

# KeeperException codes.
OK = 0
NO_NODE = -101
NODE_EXISTS = -110
BAD_ARGUMENTS = -8
UNIMPLEMENTED = -6

OPEN_ACL_UNSAFE = [(31, "world", "anyone")]

XID_NOTIFICATION = -1
XID_PING = -2
XID_SET_WATCHES = -8


class ZkError(Exception):
    def __init__(self, code, what=""):
        super().__init__(f"ZooKeeper error {code} {what}".strip())
        self.code = code


# ---- jute encoding ----

def _int(v):
    return struct.pack(">i", v)


def _long(v):
    return struct.pack(">q", v)


def _bool(v):
    return b"\x01" if v else b"\x00"


def _buffer(b):
    if b is None:
        return _int(-1)
    return _int(len(b)) + b


def _string(s):
    return _buffer(s.encode("utf-8"))


def _strings(items):
    out = _int(len(items))
    for s in items:
        out += _string(s)
    return out


def _acls(acls):
    out = _int(len(acls))
    for perms, scheme, ident in acls:
        out += _int(perms) + _string(scheme) + _string(ident)
    return out


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ValueError("truncated reply")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self):
        return struct.unpack(">i", self._take(4))[0]

    def long(self):
        return struct.unpack(">q", self._take(8))[0]

    def bool(self):
        return self._take(1) != b"\x00"

    def buffer(self):
        n = self.int()
        if n < 0:
            return None
        return self._take(n)

    def string(self):
        b = self.buffer()
        return None if b is None else b.decode("utf-8")

    def stat(self):
        keys = ["czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
                "ephemeralOwner", "dataLength", "numChildren", "pzxid"]
        kinds = ["long", "long", "long", "long", "int", "int", "int", "long", "int", "int", "long"]
        return {k: getattr(self, kind)() for k, kind in zip(keys, kinds)}


class Event:
    def __init__(self, type, state, path):
        self.type = type
        self.state = state
        self.path = path

    def __repr__(self):
        return f"Event(type={self.type}, state={self.state}, path={self.path!r})"


class RawClient:
    """One session on one server. Events land in `self.events` (a queue.Queue of Event)."""

    def __init__(self, host, port, timeout_ms=10000, connect_timeout=10.0):
        self.requested_timeout_ms = timeout_ms
        self.connect_timeout = connect_timeout
        self.session_id = 0
        self.password = b"\x00" * 16
        self.last_zxid = 0
        self.events = queue.Queue()
        self._lock = threading.Lock()
        self._open(host, port)

    def _open(self, host, port):
        """Connect (or re-connect, with the session id, password and last zxid seen)."""
        self.sock = socket.create_connection((host, port), timeout=self.connect_timeout)
        self.sock.settimeout(self.connect_timeout)
        req = (_int(0) + _long(self.last_zxid) + _int(self.requested_timeout_ms)
               + _long(self.session_id) + _buffer(self.password) + _bool(False))
        self._send_frame(req)
        reply = Reader(self._recv_frame())
        reply.int()  # protocol version
        self.timeout_ms = reply.int()
        session_id = reply.long()
        password = reply.buffer()
        if self.timeout_ms <= 0:
            self.sock.close()
            raise ZkError(-112, "session expired or refused")
        self.session_id, self.password = session_id, password
        self.sock.settimeout(None)
        self._pending = {}
        self._xid = 0
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self._pinger = threading.Thread(target=self._ping_loop, daemon=True)
        self._pinger.start()

    def drop(self):
        """Close the connection without closing the session (as a network failure would)."""
        self._closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._reader.join(timeout=5.0)
        self._pinger.join(timeout=5.0)

    def reconnect(self, host, port, data=(), exist=(), child=(), persistent=(), recursive=()):
        """Re-open this session on host:port and re-register watches with setWatches
        (setWatches2 when persistent or recursive watches are given)."""
        self._open(host, port)
        body = _long(self.last_zxid) + _strings(data) + _strings(exist) + _strings(child)
        op = SET_WATCHES
        if persistent or recursive:
            op = SET_WATCHES2
            body += _strings(persistent) + _strings(recursive)
        slot = queue.Queue(maxsize=1)
        with self._lock:
            self._pending[XID_SET_WATCHES] = slot
            self._send_frame(_int(XID_SET_WATCHES) + _int(op) + body)
        try:
            err, _, _ = slot.get(timeout=10.0)
        except queue.Empty:
            raise TimeoutError("no reply to setWatches in 10s")
        if err != OK:
            raise ZkError(err, "setWatches")

    # -- framing --
    def _send_frame(self, payload):
        self.sock.sendall(_int(len(payload)) + payload)

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        return buf

    def _recv_frame(self):
        (n,) = struct.unpack(">i", self._recv_exact(4))
        if n < 0 or n > 16 * 1024 * 1024:
            raise ValueError(f"bad frame length {n}")
        return self._recv_exact(n)

    def _read_loop(self):
        try:
            while not self._closed.is_set():
                r = Reader(self._recv_frame())
                xid, zxid, err = r.int(), r.long(), r.int()
                if xid == XID_NOTIFICATION:
                    self.events.put(Event(r.int(), r.int(), r.string()))
                    continue
                if xid == XID_PING:
                    continue
                if zxid > self.last_zxid:
                    self.last_zxid = zxid
                with self._lock:
                    slot = self._pending.pop(xid, None)
                if slot is not None:
                    slot.put((err, zxid, r))
        except Exception:
            pass
        finally:
            self._closed.set()
            with self._lock:
                pending, self._pending = self._pending, {}
            for slot in pending.values():
                slot.put(None)

    def _ping_loop(self):
        interval = max(0.5, self.timeout_ms / 3000.0)
        while not self._closed.wait(interval):
            try:
                with self._lock:
                    self._send_frame(_int(XID_PING) + _int(PING))
            except OSError:
                return

    def call(self, op, body=b"", timeout=10.0):
        """Send one request; return (err, zxid, Reader of the reply body)."""
        slot = queue.Queue(maxsize=1)
        with self._lock:
            if self._closed.is_set():
                raise ConnectionError("connection closed")
            self._xid += 1
            xid = self._xid
            self._pending[xid] = slot
            self._send_frame(_int(xid) + _int(op) + body)
        try:
            reply = slot.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no reply to opcode {op} in {timeout}s")
        if reply is None:
            raise ConnectionError("connection closed before the reply")
        return reply

    def _check(self, op, body, what):
        err, zxid, r = self.call(op, body)
        if err != OK:
            raise ZkError(err, what)
        return r

    # -- requests --
    def create(self, path, data=b"", flags=PERSISTENT, ttl=None, acl=OPEN_ACL_UNSAFE):
        """Create with createContainer / createTTL / create2 as the flags need; (path, stat)."""
        body = _string(path) + _buffer(data) + _acls(acl) + _int(flags)
        if flags == CONTAINER:
            op = CREATE_CONTAINER
        elif flags in (PERSISTENT_WITH_TTL, PERSISTENT_SEQUENTIAL_WITH_TTL):
            op = CREATE_TTL
            body += _long(ttl if ttl is not None else 0)
        else:
            op = CREATE2
        r = self._check(op, body, f"create {path}")
        return r.string(), r.stat()

    def add_watch(self, path, mode):
        self._check(ADD_WATCH, _string(path) + _int(mode), f"addWatch {path}")

    def get(self, path, watch=False):
        r = self._check(GET_DATA, _string(path) + _bool(watch), f"getData {path}")
        return r.buffer(), r.stat()

    def exists(self, path, watch=False):
        err, _, r = self.call(EXISTS, _string(path) + _bool(watch))
        if err == NO_NODE:
            return None
        if err != OK:
            raise ZkError(err, f"exists {path}")
        return r.stat()

    def sync(self, path):
        self._check(SYNC, _string(path), f"sync {path}")

    def get_children(self, path, watch=False):
        r = self._check(GET_CHILDREN, _string(path) + _bool(watch), f"getChildren {path}")
        n = r.int()
        return [r.string() for _ in range(max(n, 0))]

    def set(self, path, data, version=-1):
        return self._check(SET_DATA, _string(path) + _buffer(data) + _int(version), f"setData {path}").stat()

    def delete(self, path, version=-1):
        self._check(DELETE, _string(path) + _int(version), f"delete {path}")

    def next_event(self, timeout=10.0):
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain_events(self, quiet=1.0, limit=100):
        """Events until none arrives for `quiet` seconds (at most `limit`)."""
        out = []
        while len(out) < limit:
            ev = self.next_event(quiet)
            if ev is None:
                break
            out.append(ev)
        return out

    def close(self):
        if not self._closed.is_set():
            try:
                self.call(CLOSE_SESSION, timeout=5.0)
            except Exception:
                pass
        self._closed.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._reader.join(timeout=5.0)
        self._pinger.join(timeout=5.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
