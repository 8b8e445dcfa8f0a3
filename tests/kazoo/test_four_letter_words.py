"""Four-letter words, checked the way monitoring scripts parse them (formats, not figures)."""

import re

import pytest

from conftest import TARGET, wait_until

SRVR_LINES = [
    r"Zookeeper version: \S.*",
    r"Latency min/avg/max: \d+/\d+(\.\d+)?/\d+",
    r"Received: \d+",
    r"Sent: \d+",
    r"Connections: \d+",
    r"Outstanding: \d+",
    r"Zxid: 0x[0-9a-f]+",
    r"Mode: (leader|follower)",
    r"Node count: \d+",
]

MNTR_INT_KEYS = [
    "zk_max_latency",
    "zk_min_latency",
    "zk_packets_received",
    "zk_packets_sent",
    "zk_num_alive_connections",
    "zk_outstanding_requests",
    "zk_znode_count",
    "zk_watch_count",
    "zk_ephemerals_count",
    "zk_approximate_data_size",
]


def _field(text, name):
    m = re.search(rf"^{re.escape(name)}: (.*)$", text, re.M)
    assert m, f"no {name!r} line in:\n{text}"
    return m.group(1)


def mntr(text):
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        assert "\t" in line, f"mntr line without a tab: {line!r}"
        key, value = line.split("\t", 1)
        out[key] = value
    return out


@pytest.fixture
def member(ensemble):
    return ensemble.members[0]["id"]


@pytest.fixture
def local(make_client, ensemble, member):
    """A client connected to `member` only."""
    return make_client(hosts=ensemble.hostport(member))


def test_ruok(ensemble, zk):
    assert zk.command(b"ruok") == "imok"
    for m in ensemble.members:
        assert ensemble.four(m["id"], "ruok") == "imok"


def test_isro(ensemble, zk):
    assert zk.command(b"isro") == "rw"
    for m in ensemble.members:
        assert ensemble.four(m["id"], "isro").strip() == "rw"


def test_hash_gives_zxid_and_digest(ensemble, zk, root):
    # ZooKeeper 3.6+: `ZXID: DIGEST` lines, from its digest log (kept every 128 zxids, so
    # maybe none yet); zkraft: one line, the applied zxid's.
    zk.create(f"{root}/h", b"x")
    for m in ensemble.members:
        lines = ensemble.four(m["id"], "hash").strip().splitlines()
        for line in lines:
            assert re.fullmatch(r"[0-9a-f]+: -?\d+", line), line
        if TARGET == "zkraft":
            assert len(lines) == 1, lines


def test_srvr_format_and_one_leader(ensemble):
    modes = []
    for m in ensemble.members:
        text = ensemble.four(m["id"], "srvr")
        for pattern in SRVR_LINES:
            assert re.search(rf"^{pattern}$", text, re.M), f"member {m['id']}: no /{pattern}/ in:\n{text}"
        modes.append(_field(text, "Mode"))
        assert "Clients:" not in text
    assert sorted(modes) == ["follower", "follower", "leader"], modes


def test_stat_adds_clients(ensemble, member, local):
    text = ensemble.four(member, "stat")
    for pattern in SRVR_LINES:
        assert re.search(rf"^{pattern}$", text, re.M), f"no /{pattern}/ in:\n{text}"
    assert re.search(r"^Clients:$", text, re.M)
    clients = re.findall(r"^ /\S+:\d+\[\d+\]\(.*\)$", text, re.M)
    assert len(clients) >= 1, text  # our client (and this 4lw connection itself)


def test_srvr_counts_move(ensemble, member, local, root):
    before = ensemble.four(member, "srvr")
    for i in range(5):
        local.create(f"{root}/n{i}", b"x")
    after = ensemble.four(member, "srvr")
    assert int(_field(after, "Node count")) >= int(_field(before, "Node count")) + 5
    assert int(_field(after, "Received")) > int(_field(before, "Received"))
    assert int(_field(after, "Zxid"), 16) > int(_field(before, "Zxid"), 16)
    assert int(_field(after, "Connections")) >= 1


def test_mntr(ensemble, member, local, root):
    local.create(f"{root}/e1", ephemeral=True)
    local.create(f"{root}/e2", b"data", ephemeral=True)
    local.get(f"{root}/e1", watch=lambda e: None)
    values = mntr(ensemble.four(member, "mntr"))
    assert values["zk_version"].strip()
    assert values["zk_server_state"] in ("leader", "follower")
    float(values["zk_avg_latency"])
    for key in MNTR_INT_KEYS:
        assert key in values, f"mntr has no {key}"
        assert re.fullmatch(r"-?\d+", values[key]), f"{key}={values[key]!r}"
    assert int(values["zk_num_alive_connections"]) >= 1
    assert int(values["zk_ephemerals_count"]) >= 2
    assert int(values["zk_watch_count"]) >= 1
    assert int(values["zk_znode_count"]) >= 4  # /, /zookeeper..., our root, ephemerals
    assert int(values["zk_approximate_data_size"]) >= 4
    assert int(values["zk_min_latency"]) <= int(values["zk_max_latency"])


def test_mntr_states_one_leader(ensemble):
    states = sorted(mntr(ensemble.four(m["id"], "mntr"))["zk_server_state"] for m in ensemble.members)
    assert states == ["follower", "follower", "leader"]


def test_conf_has_client_port(ensemble):
    for m in ensemble.members:
        text = ensemble.four(m["id"], "conf")
        assert re.search(rf"^clientPort={m['port']}$", text, re.M), text


def test_cons_lists_this_client(ensemble, member, local):
    sid = local.client_id[0]
    text = ensemble.four(member, "cons")
    line = [l for l in text.splitlines() if f"sid=0x{sid:x}" in l]
    assert len(line) == 1, text
    assert re.match(r"^ /\S+:\d+\[\d+\]\(.*\)$", line[0]), line[0]
    assert ensemble.member_of_session(sid) == [member]


def test_envi(ensemble, zk):
    for m in ensemble.members:
        text = ensemble.four(m["id"], "envi")
        assert text.startswith("Environment:"), text
        assert re.search(r"^zookeeper\.version=\d+\.\d+\.\d+", text, re.M), text
    # kazoo's server_version() parses envi.
    version = zk.server_version()
    assert isinstance(version, tuple) and len(version) >= 2
    assert all(isinstance(v, int) for v in version)


def test_watch_words(ensemble, member, local, root):
    path = f"{root}/watched"
    local.create(path)
    local.get(path, watch=lambda e: None)
    sid = f"0x{local.client_id[0]:x}"

    wchs = ensemble.four(member, "wchs")
    m = re.match(r"^(\d+) connections watching (\d+) paths\nTotal watches:(\d+)", wchs)
    assert m, wchs
    assert int(m.group(1)) >= 1 and int(m.group(2)) >= 1 and int(m.group(3)) >= 1

    wchc = ensemble.four(member, "wchc")  # session, then its paths indented with a tab
    lines = wchc.splitlines()
    assert sid in lines, wchc
    i = lines.index(sid)
    following = []
    for line in lines[i + 1:]:
        if not line.startswith("\t"):
            break
        following.append(line[1:])
    assert path in following, wchc

    wchp = ensemble.four(member, "wchp")  # path, then its sessions indented with a tab
    lines = wchp.splitlines()
    assert path in lines, wchp
    i = lines.index(path)
    assert f"\t{sid}" in lines[i + 1:], wchp


def test_watch_words_forget_fired_watches(ensemble, member, local, zk2, root):
    path = f"{root}/once"
    local.create(path)
    local.get(path, watch=lambda e: None)
    assert path in ensemble.four(member, "wchp")
    zk2.set(path, b"fire")
    wait_until(lambda: path not in ensemble.four(member, "wchp"), timeout=10, what="watch gone from wchp")


def test_dump_on_leader_lists_ephemerals(ensemble, zk, root):
    path = f"{root}/eph"
    zk.create(path, ephemeral=True)
    modes = ensemble.modes()
    leaders = [mid for mid, mode in modes.items() if mode == "leader"]
    assert len(leaders) == 1, modes
    text = ensemble.four(leaders[0], "dump")
    sid = f"0x{zk.client_id[0]:x}"
    assert sid in text, text
    lines = text.splitlines()
    # "<session>:" then its ephemerals, indented with a tab.
    header = [i for i, l in enumerate(lines) if l.strip() == f"{sid}:"]
    assert header, text
    eph = []
    for line in lines[header[0] + 1:]:
        if not line.startswith("\t"):
            break
        eph.append(line.strip())
    assert path in eph, text
