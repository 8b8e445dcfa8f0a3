"""Dynamic reconfiguration over the wire: kazoo's `reconfig` and `/zookeeper/config`.

The first three tests are kazoo's own upstream ones (kazoo/tests/test_client.py, TestReconfig),
with this suite's super user; the rest check what `/zookeeper/config` shows. run.py starts
ZooKeeper with reconfigEnabled=true (zkraft serves reconfig by default). Only the super user
may reconfigure: `/zookeeper/config` is read-only for everyone else.
"""

import socket

import pytest
from kazoo.exceptions import BadArgumentsError, BadVersionError, NoAuthError

from conftest import MEMBERS, SUPER_AUTH

pytestmark = pytest.mark.skipif(not SUPER_AUTH, reason="needs run.py's ZK_SUPER_AUTH")


def _free_sock_port():
    # Bound but not listening: a connect() to it is refused at once (ZOOKEEPER-2202), so a
    # member that tries to reach the observer never waits on it.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


def _super(make_client):
    return make_client(auth_data=[("digest", SUPER_AUTH)])


def _version(data):
    last = data.decode().split("\n")[-1]
    assert last.startswith("version="), data
    return int(last.split("=")[1], 16)


def test_no_super_auth(zk):
    with pytest.raises(NoAuthError):
        zk.reconfig(joining="server.999=0.0.0.0:1234:2345:observer;3456", leaving=None, new_members=None)


def test_bad_input(zk):
    with pytest.raises(BadArgumentsError):
        zk.reconfig(joining="some thing", leaving=None, new_members=None)


def test_add_remove_observer(make_client):
    client = _super(make_client)
    s1, port1 = _free_sock_port()
    s2, port2 = _free_sock_port()
    s3, port3 = _free_sock_port()
    try:
        joining = "server.100=0.0.0.0:%d:%d:observer;0.0.0.0:%d" % (port1, port2, port3)
        data, _ = client.reconfig(joining=joining, leaving=None, new_members=None)
        assert joining.encode("utf8") in data

        data, _ = client.reconfig(joining=None, leaving="100", new_members=None)
        assert joining.encode("utf8") not in data

        # Adding it again, but for a configuration version from the future.
        curver = _version(data)
        with pytest.raises(BadVersionError):
            client.reconfig(joining=joining, leaving=None, new_members=None, from_config=curver + 1)
    finally:
        for s in (s1, s2, s3):
            s.close()


def test_config_lists_every_member_and_the_reply_is_the_znode(make_client):
    client = _super(make_client)
    data, stat = client.get("/zookeeper/config")
    lines = data.decode().split("\n")
    ids = sorted(int(l.split("=")[0][len("server."):]) for l in lines if l.startswith("server."))
    assert ids == sorted(m["id"] for m in MEMBERS), data
    assert lines[-1].startswith("version="), data
    for line in lines[:-1]:
        assert ":participant" in line, line

    # A reconfig with the current version: answered with the new /zookeeper/config, whose
    # version (in the text) is the zxid of the change (the znode's mzxid).
    socks = [_free_sock_port() for _ in range(3)]
    try:
        ports = tuple(p for _, p in socks)
        joining = "server.101=127.0.0.1:%d:%d:observer;127.0.0.1:%d" % ports
        new, new_stat = client.reconfig(joining=joining, leaving=None, new_members=None, from_config=_version(data))
        assert _version(new) > _version(data)
        assert _version(new) == new_stat.mzxid
        got, _ = client.get("/zookeeper/config")
        assert got == new
        after, _ = client.reconfig(joining=None, leaving="101", new_members=None, from_config=_version(new))
        assert b"server.101=" not in after
    finally:
        for s, _ in socks:
            s.close()


def test_a_stranger_cannot_remove_a_member(zk):
    with pytest.raises(NoAuthError):
        zk.reconfig(joining=None, leaving=str(MEMBERS[0]["id"]), new_members=None)
