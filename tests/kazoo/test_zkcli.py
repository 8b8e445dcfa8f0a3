"""zkCli.sh, ZooKeeper's own command-line client (Debian's zookeeper package), against the
ensemble: ls, create, get, set, delete and deleteall, fed on its standard input."""

import os
import subprocess

import pytest

ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"


def zkcli(host, commands, timeout=90):
    script = "\n".join(commands + ["quit"]) + "\n"
    done = subprocess.run(
        [ZKCLI, "-server", host],
        input=script,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    # zkCli prints some answers ("Created …") on standard error.
    lines = (done.stdout + "\n" + done.stderr).splitlines()
    return [l for l in lines if l and not l.startswith(("SLF4J", "log4j"))]


@pytest.mark.skipif(not os.path.exists(ZKCLI), reason="Debian's zookeeper package is not installed")
def test_zkcli_ls_create_get_set_delete(hosts, root, zk):
    host = hosts.split(",")[0]
    p = f"{root}/cli"
    out = zkcli(
        host,
        [
            f"create {p} hello",
            f"ls {root}",
            f"get {p}",
            f"set {p} world",
            f"get {p}",
            f"create {p}/child c",
            f"ls {p}",
            f"delete {p}/child",
            f"create {p}/a x",
            f"create {p}/a/b y",
            f"deleteall {p}/a",
            f"ls {p}",
        ],
    )
    text = "\n".join(out)
    assert f"Created {p}" in out, text
    assert "[cli]" in out, text
    assert "hello" in out and "world" in out, text
    assert "[child]" in out, text
    assert f"Created {p}/a/b" in out, text
    assert out.count("[]") >= 1, text  # the last ls: child and a are gone
    zk.sync(root)
    assert zk.get(p)[0] == b"world"
    assert zk.get_children(p) == []
