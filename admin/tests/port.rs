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

/// The JSON body of `GET path`.
fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let answer = get(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Content-Type: application/json"), "{head}");
    serde_json::from_str(body).unwrap()
}

#[test]
fn zookeepers_admin_commands_answer_json() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
    let port = zkraft::ClientPort::builder(any()).start(&node).unwrap();
    let admin = AdminPort::builder(any()).start(&node).unwrap();
    let addr = admin.local_addr();
    let s = node.session().unwrap();
    s.create("/app", b"hello", CreateMode::Persistent).unwrap();
    s.create("/app/e", b"", CreateMode::Ephemeral).unwrap();
    s.get_data("/app", Some(Box::new(|_| {}))).unwrap();

    let ruok = json(addr, "/commands/ruok");
    assert_eq!(ruok, serde_json::json!({"command": "ruok", "error": null}));
    let mntr = json(addr, "/commands/mntr");
    assert_eq!(mntr["command"], "monitor");
    assert_eq!(mntr["server_state"], "standalone");
    assert_eq!(mntr["znode_count"], 6);
    assert_eq!(mntr["ephemerals_count"], 1);
    assert_eq!(mntr["watch_count"], 1);
    let srvr = json(addr, "/commands/server_stats");
    assert_eq!(srvr["node_count"], 6);
    assert!(srvr["version"]
        .as_str()
        .unwrap()
        .starts_with("3.8.0-zkraft"));
    let conf = json(addr, "/commands/conf");
    assert_eq!(conf["command"], "configuration");
    assert_eq!(conf["client_port"], port.local_addr().port());
    assert_eq!(conf["server_id"], 1);
    assert_eq!(conf["secure_client_port"], -1);
    let wchp = json(addr, "/commands/wchp");
    let sid = s.id();
    assert_eq!(
        wchp["path_to_session_ids"]["/app"],
        serde_json::json!([sid])
    );
    let dump = json(addr, "/commands/dump");
    assert_eq!(
        dump["session_id_to_ephemeral_paths"][sid.to_string()],
        serde_json::json!(["/app/e"])
    );
    assert_eq!(json(addr, "/commands/isro")["read_only"], false);
    assert_eq!(json(addr, "/commands/lead")["is_leader"], true);
    let hash = json(addr, "/commands/hash");
    assert_eq!(hash["digests"][0]["digest"], node.digest().value as i64);
    let ensemble = json(addr, "/commands/ensemble");
    assert_eq!(ensemble["leader"], 1);
    assert_eq!(ensemble["members"][0]["role"], "leader");
    let znode = json(addr, "/commands/znode?path=%2Fapp");
    assert_eq!(znode["data"], "hello");
    assert_eq!(znode["stat"]["num_children"], 1);
    assert_eq!(znode["children"], serde_json::json!(["e"]));
    assert_eq!(znode["acl"][0]["scheme"], "world");
    assert_eq!(json(addr, "/commands/znode?path=/nope")["exists"], false);
    assert!(json(addr, "/commands/znode?path=bad")["error"].is_string());
    let list = json(addr, "/commands");
    assert!(list["commands"].as_array().unwrap().len() >= 20);
    let unknown = get(addr, "GET /commands/nope HTTP/1.1\r\n\r\n");
    assert!(unknown.starts_with("HTTP/1.1 404"));

    // Anonymous, the page shows only what any client may read.
    let owner = node.session().unwrap();
    owner.add_auth("digest", b"owner:pw").unwrap();
    let mine = vec![zkraft::Acl::new(
        zkraft::acl::perms::ALL,
        zkraft::Id::digest("owner", "pw"),
    )];
    owner
        .create_with_acl("/private", b"secret", CreateMode::Persistent, mine)
        .unwrap();
    let hidden = json(addr, "/commands/znode?path=/private");
    assert_eq!(hidden["readable"], false);
    assert!(hidden.get("data").is_none() && hidden.get("stat").is_none());
    assert_eq!(
        hidden["acl"][0]["id"], "owner:x",
        "redacted, as getACL shows it"
    );
    // With the port's credentials, the operator reads everything.
    let locked = AdminPort::builder(any())
        .credentials(zkraft::acl::digest("ops", "s3cret"))
        .start(&node)
        .unwrap();
    let answer = get(
        locked.local_addr(),
        "GET /commands/znode?path=/private HTTP/1.1\r\nAuthorization: basic b3BzOnMzY3JldA==\r\n\r\n",
    );
    assert!(answer.contains("\"data\":\"secret\""), "{answer}");

    // Only the configured peers' origins may read the answers from their pages.
    let peered = AdminPort::builder(any())
        .peers(["http://127.0.0.1:7001/"])
        .start(&node)
        .unwrap();
    let from = |origin: &str| {
        get(
            peered.local_addr(),
            &format!("GET /commands/ensemble HTTP/1.1\r\nOrigin: {origin}\r\n\r\n"),
        )
    };
    assert!(from("http://127.0.0.1:7001")
        .contains("Access-Control-Allow-Origin: http://127.0.0.1:7001\r\n"));
    assert!(!from("http://evil.example").contains("Access-Control-Allow-Origin"));
    // A metrics-only port serves nothing else.
    let metrics = AdminPort::builder(any())
        .metrics_only()
        .start(&node)
        .unwrap();
    let at = |path: &str| {
        get(
            metrics.local_addr(),
            &format!("GET {path} HTTP/1.1\r\n\r\n"),
        )
    };
    assert!(at("/metrics").starts_with("HTTP/1.1 200"));
    assert!(at("/commands/dump").starts_with("HTTP/1.1 404"));
    assert!(at("/").starts_with("HTTP/1.1 404"));
    drop((s, owner));
    node.shutdown();
}

/// Over TLS (`--admin-tls`), with the member's certificate: a client that trusts the
/// authority reads /metrics; plain HTTP on the port gets nothing.
#[test]
fn the_port_serves_https_with_the_members_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    use std::sync::Arc;

    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let tls = zkraft::TlsConfig::from_pem(
        cert.pem().as_bytes(),
        key.serialize_pem().as_bytes(),
        ca.pem().as_bytes(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
    let admin = AdminPort::builder(any())
        .tls(tls, zkraft::ClientAuth::None)
        .start(&node)
        .unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let sock = TcpStream::connect(admin.local_addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("znode_count"));
    // Plain HTTP gets no page (a TLS alert at most).
    let plain = get(admin.local_addr(), "GET /metrics HTTP/1.1\r\n\r\n");
    assert!(!plain.contains("znode_count"));
    node.shutdown();
}
