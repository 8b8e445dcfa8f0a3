"""TLS: kazoo over the members' secure client ports (ZooKeeper's secureClientPort, which asks
clients for a certificate), against both servers; and for zkraft, whose members talk over
mutual TLS here (run.py gives them --peer-tls), a stranger with a certificate of its own
making and garbage on the peer and client ports refused while the ensemble keeps serving.
"""

import json
import os
import socket
import subprocess
import time
import uuid

import pytest
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

from certs import make_authority, make_signed
from conftest import TARGET, wait_until

SECURE_HOSTS = os.environ.get("ZK_SECURE_HOSTS")
TLS_DIR = os.environ.get("ZK_TLS_DIR")

pytestmark = pytest.mark.skipif(
    not SECURE_HOSTS,
    reason="TLS ports: zkraft's always, ZooKeeper's with ZK_TLS_TESTS=1 (not with --serve)",
)


def tls_client(hosts=None, certfile="client.pem", keyfile="client-key.pem", **kw):
    return KazooClient(
        hosts=hosts or SECURE_HOSTS,
        use_ssl=True,
        verify_certs=True,
        ca=os.path.join(TLS_DIR, "ca.pem"),
        certfile=certfile and os.path.join(TLS_DIR, certfile),
        keyfile=keyfile and os.path.join(TLS_DIR, keyfile),
        timeout=10.0,
        **kw,
    )


def test_kazoo_over_tls_writes_reads_and_watches():
    path = f"/tls-{uuid.uuid4().hex}"
    secure, plain = tls_client(), KazooClient(hosts=os.environ["ZK_HOSTS"], timeout=10.0)
    secure.start(timeout=15)
    plain.start(timeout=15)
    try:
        events = []
        secure.create(path, b"v1", makepath=True)
        secure.get(path, watch=events.append)
        # The same tree through the plain port: a write there fires the TLS client's watch.
        plain.set(path, b"v2")
        wait_until(lambda: events, what="the watch over TLS fires")
        assert secure.get(path)[0] == b"v2"
        assert sorted(secure.get_children("/")) == sorted(plain.get_children("/"))
        # A large value crosses many TLS records both ways.
        big = os.urandom(900 * 1024)
        secure.set(path, big)
        assert secure.get(path)[0] == big
        secure.delete(path)
    finally:
        for c in (secure, plain):
            c.stop()
            c.close()


def test_every_member_serves_tls():
    for host in SECURE_HOSTS.split(","):
        c = tls_client(hosts=host)
        c.start(timeout=15)
        try:
            assert c.exists("/") is not None
        finally:
            c.stop()
            c.close()


def test_a_client_without_a_trusted_certificate_is_refused(tmp_path):
    # No certificate, where the port needs one.
    c = tls_client(hosts=SECURE_HOSTS.split(",")[0], certfile=None, keyfile=None)
    with pytest.raises(KazooTimeoutError):
        c.start(timeout=3)
    c.stop()
    c.close()
    # A certificate signed by an authority of the client's own making.
    authority = make_authority(str(tmp_path), "rogue-ca")
    cert, key = make_signed(str(tmp_path), "rogue", authority)
    c = tls_client(hosts=SECURE_HOSTS.split(",")[0], certfile=cert, keyfile=key)
    with pytest.raises(KazooTimeoutError):
        c.start(timeout=3)
    c.stop()
    c.close()


def _junk(host, port, data):
    with socket.create_connection((host, port), timeout=5) as s:
        try:
            s.sendall(data)
            s.settimeout(5)
            s.recv(100)
        except OSError:
            pass


def test_garbage_on_the_tls_port_harms_no_one():
    host, port = SECURE_HOSTS.split(",")[0].rsplit(":", 1)
    for data in (b"ruok", b"\x16\x03\x01\x7f\x7f" + b"x" * 64, os.urandom(512)):
        _junk(host, int(port), data)
    c = tls_client(hosts=f"{host}:{port}")
    c.start(timeout=15)
    try:
        c.ensure_path(f"/tls-after-garbage-{uuid.uuid4().hex}")
    finally:
        c.stop()
        c.close()


@pytest.mark.skipif(TARGET != "zkraft", reason="zkraft's members talk over mutual TLS here")
def test_a_stranger_peer_and_garbage_are_refused_and_the_ensemble_serves(tmp_path):
    with open(os.environ["ZK_ZKRAFT"]) as f:
        zk = json.load(f)
    # Garbage on every member's peer port.
    for addr in zk["peers"].values():
        host, port = addr.rsplit(":", 1)
        for data in (b"ZKRT\x00\x01", b"\x16\x03\x01\x7f\x7f", os.urandom(256)):
            _junk(host, int(port), data)
    # An impostor: member 1's id and the ensemble's peers, listening elsewhere, trusting the
    # ensemble's authority but with a certificate signed by one of its own (self-made). It
    # campaigns and dials members 2 and 3, whose certificates it accepts.
    authority = make_authority(str(tmp_path), "stranger-ca")
    cert, key = make_signed(str(tmp_path), "stranger", authority)
    args = list(zk["args"])
    for flag, value in (("--tls-cert", cert), ("--tls-key", key)):
        args[args.index(flag) + 1] = value
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    log_path = os.path.join(str(tmp_path), "stranger.log")
    with open(log_path, "w") as log:
        stranger = subprocess.Popen(
            [
                zk["binary"], "--id", "1", "--bind", f"127.0.0.1:{free}",
                "--data-dir", str(tmp_path / "data"),
                "--peers", ",".join(f"{i}={a}" for i, a in zk["peers"].items()), *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        logs = [os.path.join(zk["workdir"], f"member{i}.log") for i in (1, 2, 3)]

        def logged(paths, line):
            for p in paths:
                with open(p, errors="replace") as f:
                    if line in f.read():
                        return True
            return False

        # The members refuse its certificate, and it hears the refusal.
        wait_until(
            lambda: logged(logs, "TLS handshake failed, error: invalid peer certificate"),
            timeout=20,
            what="a member logs the refused certificate",
        )
        wait_until(
            lambda: logged([log_path], "dial failed: TLS handshake"),
            timeout=20,
            what="the stranger logs the refusal",
        )
        assert not logged([log_path], "connected, peer"), "the stranger never got in"
        c = KazooClient(hosts=os.environ["ZK_HOSTS"], timeout=10.0)
        c.start(timeout=15)
        try:
            path = f"/after-stranger-{uuid.uuid4().hex}"
            deadline = time.monotonic() + 3
            c.create(path, b"ok")
            assert time.monotonic() < deadline, "writes go on"
            assert c.get(path)[0] == b"ok"
        finally:
            c.stop()
            c.close()
    finally:
        stranger.kill()
        stranger.wait(timeout=10)
