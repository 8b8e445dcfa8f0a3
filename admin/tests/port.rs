//! The admin port over a loopback socket: /metrics served, credentials asked for and
//! checked, garbage and other paths refused, and the port stopped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use zkraft::{CreateMode, Node};
use zkraft_admin::AdminPort;

fn get(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[test]
fn metrics_are_served_and_credentials_checked() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
    node.create("/a", b"x", CreateMode::Persistent).unwrap();
    let open = AdminPort::builder(any()).start(&node).unwrap();
    let answer = get(
        open.local_addr(),
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Content-Type: application/openmetrics-text"));
    assert!(answer.contains("\nznode_count 5\n"), "{answer}");
    assert!(answer.ends_with("# EOF\n"));
    let head = get(open.local_addr(), "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK") && !head.contains("znode_count"));
    assert!(get(open.local_addr(), "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(get(open.local_addr(), "DELETE /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    assert!(get(open.local_addr(), "\x16\x03\x01\x00\x05hello\r\n\r\n").starts_with("HTTP/1.1 400"));

    let digest = zkraft::acl::digest("ops", "s3cret");
    let locked = AdminPort::builder(any())
        .credentials(digest)
        .start(&node)
        .unwrap();
    let refused = get(locked.local_addr(), "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.contains("WWW-Authenticate: Basic"));
    // ops:wrong, then ops:s3cret.
    let wrong = get(
        locked.local_addr(),
        "GET /metrics HTTP/1.1\r\nAuthorization: Basic b3BzOndyb25n\r\n\r\n",
    );
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let right = get(
        locked.local_addr(),
        "GET /metrics HTTP/1.1\r\nAuthorization: Basic b3BzOnMzY3JldA==\r\n\r\n",
    );
    assert!(right.starts_with("HTTP/1.1 200"), "{right}");

    let addr = open.local_addr();
    open.stop();
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
            || get(addr, "GET /metrics HTTP/1.1\r\n\r\n").is_empty()
    );
    assert!(zkraft_admin::AdminPort::builder(any())
        .credentials("no-colon")
        .start(&node)
        .is_err());
    node.shutdown();
}
