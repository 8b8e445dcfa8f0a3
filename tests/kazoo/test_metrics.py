"""Prometheus metrics (zkraft only: --metrics-addr; the ZooKeeper package has no Prometheus
exporter): each member's /metrics is parsed with the Prometheus client library's OpenMetrics
parser, and its counters move as requests are served.
"""

import os
import urllib.error
import urllib.request
import uuid

import pytest
from kazoo.client import KazooClient
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import HOSTS, wait_until

METRICS = os.environ.get("ZK_METRICS")

pytestmark = pytest.mark.skipif(not METRICS, reason="zkraft's members export metrics")


def scrape(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        text = r.read().decode()
    samples = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def test_every_member_exports_zookeepers_names_and_raft_state():
    leaders = 0
    for addr in METRICS.split(","):
        samples, types = scrape(addr)
        for name in ("znode_count", "watch_count", "global_sessions", "num_alive_connections",
                     "outstanding_requests", "ephemerals_count", "approximate_data_size"):
            assert types[name] == "gauge", name
            assert value(samples, name) is not None, name
        assert types["zkraft_fsync_seconds"] == "histogram"
        assert types["zkraft_proposals"] == "counter"
        assert value(samples, "zkraft_term") >= 1
        assert value(samples, "zkraft_commit_index") >= value(samples, "zkraft_applied_index") - 1
        leaders += value(samples, "zkraft_role") == 3
        # Bytes flow to both peers (heartbeats at least).
        peers = [k for k in samples if k[0] == "zkraft_peer_sent_bytes_total"]
        assert len(peers) == 2, peers
    assert leaders == 1


def test_counters_move_as_requests_are_served():
    addr = METRICS.split(",")[0]
    host = HOSTS.split(",")[0]
    before, _ = scrape(addr)
    client = KazooClient(hosts=host, timeout=10.0)
    client.start(timeout=15)
    try:
        path = f"/metrics-{uuid.uuid4().hex}"
        for i in range(20):
            client.create(f"{path}-{i}", b"x" * 100)
        for i in range(30):
            client.get(f"{path}-0")
        client.get(f"{path}-1", watch=lambda e: None)
        during, _ = scrape(addr)
        assert value(during, "num_alive_connections") >= 1
        assert value(during, "watch_count") >= 1
        assert value(during, "znode_count") >= value(before, "znode_count") + 20
        creates = value(during, "zkraft_request_seconds_count", op="create") or 0
        was = value(before, "zkraft_request_seconds_count", op="create") or 0
        assert creates >= was + 20
        reads = value(during, "zkraft_request_seconds_count", op="get_data") or 0
        assert reads >= (value(before, "zkraft_request_seconds_count", op="get_data") or 0) + 31
        inf = value(during, "zkraft_request_seconds_bucket", op="create", le="+Inf")
        assert inf == creates, "the +Inf bucket holds every request"
        assert value(during, "packets_received") > value(before, "packets_received")
        # Every member applied the writes, and fsynced them.
        for a in METRICS.split(","):
            wait_until(
                lambda: value(scrape(a)[0], "zkraft_applied_index")
                >= value(during, "zkraft_applied_index"),
                what=f"{a} to apply the writes",
            )
            s, _ = scrape(a)
            assert value(s, "zkraft_fsync_seconds_count") >= 1
            assert value(s, "zkraft_log_syncs_total") >= 1
        for i in range(20):
            client.delete(f"{path}-{i}")
    finally:
        client.stop()
        client.close()


def test_other_paths_and_methods_are_refused():
    addr = METRICS.split(",")[0]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://{addr}/nothing-here", timeout=10)
    assert e.value.code == 404
    req = urllib.request.Request(f"http://{addr}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405
