//! TLS on both ports, with certificates made at run time: three members over mutual TLS
//! replicate, and a stranger (a certificate from another authority), a plain peer and
//! garbage are refused without harming them; a TLS client port serves beside a plain one,
//! asks for client certificates as configured, and closes connections that break TLS.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::wait_until;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tempfile::TempDir;
use zkraft::{ClientAuth, ClientPort, CreateMode, Node, Pool, TcpTransport, TlsConfig, Transport};

const CLUSTER: &str = "tls-test";

/// A certificate authority made for the test.
struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate this authority signed for `localhost` and 127.0.0.1, and its key (PEM).
struct Signed {
    cert: String,
    key: String,
    ca: String,
}

impl Authority {
    fn new() -> Authority {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Authority { cert, key }
    }

    fn sign(&self) -> Signed {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Signed {
            cert: cert.pem(),
            key: key.serialize_pem(),
            ca: self.cert.pem(),
        }
    }

    /// A member's TLS configuration, from PEM files as an operator writes them.
    fn member(&self, dir: &TempDir, name: &str) -> TlsConfig {
        let s = self.sign();
        let path = |f: &str| dir.path().join(format!("{name}-{f}.pem"));
        std::fs::write(path("cert"), &s.cert).unwrap();
        std::fs::write(path("key"), &s.key).unwrap();
        std::fs::write(path("ca"), &s.ca).unwrap();
        TlsConfig::from_pem_files(path("cert"), path("key"), path("ca")).unwrap()
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn transport(id: u64, tls: Option<TlsConfig>) -> TcpTransport {
    let mut b = TcpTransport::builder(id, CLUSTER, any_port());
    if let Some(tls) = tls {
        b = b.tls(tls);
    }
    b.bind().unwrap()
}

fn start(id: u64, dir: &TempDir, t: &TcpTransport, pool: &Pool) -> Node {
    Node::builder(id)
        .cluster_id(CLUSTER)
        .voters([1, 2, 3])
        .data_dir(dir.path())
        .tick_interval(Duration::from_millis(20))
        .request_timeout(Duration::from_secs(5))
        .transport(t.clone())
        .pool(pool.clone())
        .start()
        .unwrap()
}

fn write_through(nodes: &[Node], from: usize, to: usize) {
    let via = nodes
        .iter()
        .find(|n| n.role() != zkraft::Role::Leader)
        .unwrap();
    for i in from..to {
        common::retry(|| via.create(&format!("/k{i}"), b"v", CreateMode::Persistent));
    }
    let target = via.applied_index();
    wait_until(Duration::from_secs(15), "every member applies", || {
        nodes.iter().all(|n| n.applied_index() >= target)
    });
}

#[test]
fn three_members_over_mutual_tls_replicate_and_strangers_are_refused() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Authority::new();
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let pool = Pool::new(3).unwrap();
    let ts: Vec<TcpTransport> = (1..=3)
        .map(|id| transport(id, Some(ca.member(&certs, &format!("m{id}")))))
        .collect();
    for t in &ts {
        for o in &ts {
            if o.id() != t.id() {
                t.add_peer(o.id(), &o.local_addr().to_string()).unwrap();
            }
        }
    }
    let nodes: Vec<Node> = ts
        .iter()
        .zip(&dirs)
        .map(|(t, d)| start(t.id(), d, t, &pool))
        .collect();
    wait_until(Duration::from_secs(15), "a leader", || {
        nodes.iter().any(|n| n.role() == zkraft::Role::Leader)
    });
    write_through(&nodes, 0, 30);

    // Member 1 again, from another authority (a self-signed certificate), and in plain
    // TCP, both dialling members 2 and 3 and sending them a vote request each.
    let strangers = [
        transport(1, Some(Authority::new().member(&certs, "stranger"))),
        transport(1, None),
    ];
    for s in &strangers {
        for t in &ts[1..] {
            s.add_peer(t.id(), &t.local_addr().to_string()).unwrap();
            s.send(
                t.id(),
                zkraft::Envelope::SessionPing {
                    from: 1,
                    to: t.id(),
                    sessions: vec![1],
                },
            );
        }
    }
    // Garbage on a member's peer port.
    for junk in [&b"\x16\x03\x01\x00\x05hello"[..], &[0u8; 64][..]] {
        let mut s = TcpStream::connect(ts[2].local_addr()).unwrap();
        let _ = s.write_all(junk);
    }
    std::thread::sleep(Duration::from_millis(500));
    for s in &strangers {
        for t in &ts[1..] {
            assert!(!s.peer_stats(t.id()).unwrap().connected);
        }
    }
    write_through(&nodes, 30, 60);
    let digests: Vec<_> = nodes.iter().map(|n| n.digest()).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    for n in &nodes {
        assert_eq!(n.get_children("/").unwrap().len(), 61);
        n.shutdown();
    }
    for t in ts.iter().chain(&strangers) {
        t.shutdown();
    }
}

/// A ZooKeeper client's stream: TLS (with or without a certificate), or plain.
enum Stream {
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Plain(TcpStream),
}

impl Stream {
    fn tls(addr: SocketAddr, ca: &str, cert: Option<&Signed>) -> Stream {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match cert {
            Some(s) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(s.cert.as_bytes())
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_slice(s.key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let conn = ClientConnection::new(Arc::new(config), name).unwrap();
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Stream::Tls(Box::new(StreamOwned::new(conn, sock)))
    }

    fn plain(addr: SocketAddr) -> Stream {
        let sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Stream::Plain(sock)
    }

    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Tls(s) => &mut **s,
            Stream::Plain(s) => s,
        }
    }

    /// A four-letter word's answer, or the error that ended the connection.
    fn ask(mut self, word: &str) -> std::io::Result<String> {
        self.io().write_all(word.as_bytes())?;
        self.io().flush()?;
        let mut out = Vec::new();
        self.io().read_to_end(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn frame(&mut self, body: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        self.io().write_all(&out)?;
        self.io().flush()?;
        let mut len = [0u8; 4];
        self.io().read_exact(&mut len)?;
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        self.io().read_exact(&mut buf)?;
        Ok(buf)
    }

    /// Opens a session, creates `path` and reads it back: the data read.
    fn create_and_read(mut self, path: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut connect = vec![0u8; 4 + 8];
        connect.extend_from_slice(&30_000i32.to_be_bytes());
        connect.extend_from_slice(&0i64.to_be_bytes());
        connect.extend_from_slice(&16i32.to_be_bytes());
        connect.extend_from_slice(&[0u8; 16]);
        connect.push(0);
        let answer = self.frame(&connect)?;
        assert_ne!(i64::from_be_bytes(answer[8..16].try_into().unwrap()), 0);
        let jstr = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        };
        let mut create = [1i32.to_be_bytes(), 1i32.to_be_bytes()].concat();
        jstr(&mut create, path.as_bytes());
        jstr(&mut create, data);
        create.extend_from_slice(&1i32.to_be_bytes());
        create.extend_from_slice(&31i32.to_be_bytes());
        jstr(&mut create, b"world");
        jstr(&mut create, b"anyone");
        create.extend_from_slice(&0i32.to_be_bytes());
        let answer = self.frame(&create)?;
        assert_eq!(&answer[12..16], &0i32.to_be_bytes(), "create answered ok");
        let mut get = [2i32.to_be_bytes(), 4i32.to_be_bytes()].concat();
        jstr(&mut get, path.as_bytes());
        get.push(0);
        let answer = self.frame(&get)?;
        assert_eq!(&answer[12..16], &0i32.to_be_bytes(), "getData answered ok");
        let len = i32::from_be_bytes(answer[16..20].try_into().unwrap()) as usize;
        Ok(answer[20..20 + len].to_vec())
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn a_tls_client_port_serves_beside_a_plain_one_and_checks_its_clients() {
    let certs = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::new();
    let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
    let tls = ca.member(&certs, "server");
    let port = |tls: Option<ClientAuth>| {
        let mut b = ClientPort::builder(any_port()).four_letter_words(["ruok"]);
        if let Some(auth) = tls {
            b = b.tls(ca.member(&certs, "server"), auth);
        }
        b.start(&node).unwrap()
    };
    let plain = port(None);
    let need = port(Some(ClientAuth::Need));
    let none = port(Some(ClientAuth::None));
    drop(tls);
    let client = ca.sign();
    let ca_pem = client.ca.clone();

    // A client with a certificate from the authority: sessions, writes and reads.
    let got = Stream::tls(need.local_addr(), &ca_pem, Some(&client))
        .create_and_read("/over-tls", b"secret")
        .unwrap();
    assert_eq!(got, b"secret");
    assert_eq!(node.get_data("/over-tls").unwrap().0, b"secret");
    assert_eq!(
        Stream::tls(need.local_addr(), &ca_pem, Some(&client))
            .ask("ruok")
            .unwrap(),
        "imok"
    );
    // Without a certificate where one is needed, with one from another authority, in
    // plain TCP, or with garbage: the connection ends without an answer (a TLS alert at
    // most).
    let stranger = Authority::new().sign();
    assert!(Stream::tls(need.local_addr(), &ca_pem, None)
        .ask("ruok")
        .map_or(true, |a| !a.contains("imok")));
    assert!(Stream::tls(need.local_addr(), &ca_pem, Some(&stranger))
        .ask("ruok")
        .map_or(true, |a| !a.contains("imok")));
    assert!(Stream::plain(need.local_addr())
        .ask("ruok")
        .map_or(true, |a| !a.contains("imok")));
    assert!(Stream::plain(need.local_addr())
        .ask("\x16\x03\x01\x7f\x7fgarbage")
        .map_or(true, |a| !a.contains("imok")));
    // A port that asks for no certificate serves a client without one.
    assert_eq!(
        Stream::tls(none.local_addr(), &ca_pem, None)
            .create_and_read("/no-cert", b"x")
            .unwrap(),
        b"x"
    );
    // And the plain port beside them serves plain clients.
    assert_eq!(
        Stream::plain(plain.local_addr()).ask("ruok").unwrap(),
        "imok"
    );
    assert_eq!(
        Stream::plain(plain.local_addr())
            .create_and_read("/plain", b"p")
            .unwrap(),
        b"p"
    );
    node.shutdown();
}
