#!/usr/bin/env python3
"""Start a 3-member ensemble on loopback, run the kazoo compatibility suite against it, stop it.

    python3 tests/kazoo/run.py --target zookeeper [pytest args...]
    python3 tests/kazoo/run.py --target zkraft    [pytest args...]
    python3 tests/kazoo/run.py --target zookeeper|zkraft --exec CMD [ARGS...]
    python3 tests/kazoo/run.py --target zookeeper|zkraft --serve

--exec runs CMD ARGS... instead of pytest (everything after --exec is the command, so it comes
last), in the caller's working directory, with the same environment and the same --timeout;
run.py's exit code is then the command's (the Curator suite, tests/curator/, runs this way).

--serve starts the same ensemble, prints one line `ZK_HOSTS=127.0.0.1:c1,127.0.0.1:c2,127.0.0.1:c3`
once every member serves, then blocks (no pytest) until its standard input closes or it gets
SIGTERM / SIGINT, and stops the members as below (`./dev bench --vs-zookeeper` uses it). With
--serve (or --jvm-as-shipped), ZooKeeper's JVM runs with the settings zkServer.sh ships
(-Xmx1000m, the JVM's default collector and JIT) instead of the suite's fast-start ones; both
targets keep their durable defaults (ZooKeeper's forceSync=yes, zkraft's fsync before acknowledging).

--target zookeeper runs Apache ZooKeeper 3.8 (QuorumPeerMain from the jars in /usr/share/java,
or --zk-classpath / ZK_CLASSPATH). --target zkraft runs three `zkraft-server` processes
(target/debug/zkraft-server under the repository root, or ZKRAFT_SERVER; extra flags for every
member may be given in ZKRAFT_ARGS). ZooKeeper's members get more JVM flags (system properties) from
ZK_JVM_ARGS.

The suite (pytest, or the --exec command) gets, in its environment:
  ZK_HOSTS       127.0.0.1:c1,127.0.0.1:c2,127.0.0.1:c3
  ZK_MEMBERS     a JSON file: [{"id": 1, "host": "127.0.0.1", "port": c1}, ...]
  ZK_CONTROL     a unix socket where this harness takes one-line commands about its members,
                 one command per connection: "stop N" (SIGTERM, then SIGKILL after a bounded
                 wait), "kill N" (SIGKILL), "start N" (start it again and wait, 60 s at most,
                 until it serves), "launch N" (start it again, without waiting); the reply
                 is one line, "ok" or "error ...". Also "pause N" (SIGSTOP) and "resume N"
                 (SIGCONT); with --proxy, "cut A B", "delay A B MS", "drop A B PERCENT" on
                 the link from member A to member B, and "heal" (every link clear). Connections are
                 served concurrently (commands about one member one at a time), so after
                 stopping every member the suite starts them together, a "start N" per
                 connection: one member alone has no quorum and does not serve.
  ZK_SUPER_AUTH  "super:PASSWORD", the credentials of the super user the ensemble was given.
  ZK_TARGET      zookeeper | zkraft
  ZK_ZKRAFT      (zkraft only) a JSON file: the zkraft-server binary, the flags every member
                 gets, the members' peer addresses and the work dir, to start more members
  ZK_SECURE_HOSTS  127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3: the members' TLS client ports
                 (ZooKeeper's secureClientPort, asking clients for a certificate)
  ZK_SASL_USERS  a JSON file: the SASL DIGEST-MD5 users both servers take from the JAAS file
                 run.py writes ({"jaasuser": "jaas_password", "super": ...}; "super" is
                 the super user once logged in, ZooKeeper's zookeeper.superUser)
  ZK_METRICS     (zkraft only) 127.0.0.1:m1,127.0.0.1:m2,127.0.0.1:m3: the members' metrics
                 ports (--metrics-addr; GET /metrics)
  ZK_ADMIN       (zkraft only) 127.0.0.1:a1,127.0.0.1:a2,127.0.0.1:a3: the members' admin
                 ports (--admin-addr; /commands/<name> and the admin page at /)
  ZK_TLS_DIR     the directory of the test certificates (certs.py): ca.pem, the authority;
                 client.pem and client-key.pem, a client certificate it signed; member.pem
                 and member-key.pem, the members' own

--proxy puts a TCP proxy (linkproxy.py) on every directed link between members: each member's
configuration names its own address and the others' proxies, so the control socket can cut,
delay or break single links without root. ZooKeeper then runs with reconfigEnabled=false (its
members' configurations differ, and must not be exchanged). ZK_PROXY=1 is then in the suite's
environment.

Without --serve, zkraft's members serve TLS too: a secure client port each, and they talk to
each other over mutual TLS (--peer-tls). ZooKeeper's members do so with ZK_TLS_TESTS=1 only:
its TLS port needs its Netty connection factory, which then serves its plain port too, and
the suite's reference is ZooKeeper as it is usually run (NIO); ./dev test runs test_tls.py
and test_sasl.py against such an ensemble of its own.

Only processes this harness started are ever signalled, and only by their pid. Its exit code is
pytest's (or the --exec command's), 2 when the ensemble could not be started, 3 when the suite
was stopped after --timeout seconds (127 when the --exec command could not be run).
"""

import argparse
import base64
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from certs import make_authority, make_signed
from linkproxy import Links, zookeeper_election_address

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

SUPER_USER = "super"
SUPER_PASSWORD = "zkraft-kazoo-super"
# SASL DIGEST-MD5 users (kazoo's own harness uses jaasuser / jaas_password).
SASL_USERS = {"jaasuser": "jaas_password", "super": SUPER_PASSWORD}
READY_TIMEOUT = 60.0  # seconds for the whole ensemble (or one restarted member) to serve
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL_LINES = 60

ZK_JARS = [
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "slf4j-api.jar",
    "slf4j-simple.jar",
    "netty-handler.jar",
    "netty-common.jar",
    "netty-buffer.jar",
    "netty-transport.jar",
    "netty-codec.jar",
    "netty-resolver.jar",
    "netty-transport-native-epoll.jar",
    "netty-transport-native-unix-common.jar",
    "metrics-core.jar",
    "commons-cli.jar",
    "snappy-java.jar",
]


def super_digest(user, password):
    """ZooKeeper's digest of `user:password`: base64(sha1("user:password"))."""
    raw = hashlib.sha1(f"{user}:{password}".encode()).digest()
    return f"{user}:{base64.b64encode(raw).decode()}"


def free_ports(count):
    """Ports the kernel hands out on 127.0.0.1 right now (all held open until all are picked)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def four_letter(port, cmd, timeout=2.0):
    """Send a four-letter word to 127.0.0.1:port and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(cmd.encode())
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks).decode("utf-8", "replace")


def log(msg):
    print(f"[run.py {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class ControlError(RuntimeError):
    """The harness answered a control command with an error."""


def control(line, path=None, timeout=180.0):
    """Sends one command (`kill 2`, `start 2`, `cut 1 3`, ...) to the control socket of the
    run.py that started this process (ZK_CONTROL, or `path`); raises ControlError unless
    the answer is "ok"."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path or os.environ["ZK_CONTROL"])
        s.sendall(f"{line}\n".encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(1024)
            if not chunk:
                break
            reply += chunk
    reply = reply.decode().strip()
    if reply != "ok":
        raise ControlError(f"harness: {line}: {reply}")


class Member:
    def __init__(self, mid, client_port, argv, cwd, log_path):
        self.id = mid
        self.client_port = client_port
        self.argv = argv
        self.cwd = cwd
        self.log_path = log_path
        self.proc = None
        self.lock = threading.Lock()  # the process's start and stop (control threads, main)
        self.retired = False  # set when the harness stops for good: no start after that

    def start(self):
        """Starts the process unless it runs; False once the harness has retired the member."""
        with self.lock:
            if self.retired:
                return False
            if self.proc is not None and self.proc.poll() is None:
                return True
            self._spawn()
            return True

    def _spawn(self):
        with open(self.log_path, "ab") as out:
            out.write(f"\n==== run.py starts member {self.id}: {shlex.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log(f"member {self.id} started, pid {self.proc.pid}, client port {self.client_port}")

    def stop(self, hard=False, retire=False):
        """SIGTERM (or SIGKILL when hard), then SIGKILL after STOP_GRACE; waits for the exit.

        With retire, the member is never started again (the harness is stopping)."""
        with self.lock:
            if retire:
                self.retired = True
            self._stop(hard)

    def _stop(self, hard):
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if not hard:
            proc.send_signal(signal.SIGTERM)  # Popen signals only its own, still-unreaped child
            proc.send_signal(signal.SIGCONT)  # a paused member takes its SIGTERM now
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                log(f"member {self.id} (pid {proc.pid}) ignored SIGTERM for {STOP_GRACE}s")
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                log(f"member {self.id} (pid {proc.pid}) did not exit after SIGKILL")
        log(f"member {self.id} (pid {proc.pid}) stopped, exit status {proc.returncode}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        """Sends `sig` to the member's process if it runs (SIGSTOP / SIGCONT); False once the
        harness has retired the member."""
        with self.lock:
            if self.retired and sig != signal.SIGCONT:
                return False
            if self.alive():
                self.proc.send_signal(sig)
            return True

    def serves(self):
        """One bounded probe: a kazoo session on this member alone that can read `/`."""
        from kazoo.client import KazooClient

        client = KazooClient(
            hosts=f"127.0.0.1:{self.client_port}",
            timeout=10.0,
            connection_retry={"max_tries": 1, "delay": 0.2, "max_delay": 0.5},
        )
        try:
            client.start(timeout=3.0)
            client.sync("/")
            return client.exists("/") is not None
        except Exception:
            return False
        finally:
            try:
                client.stop()
                client.close()
            except Exception:
                pass

    def wait_serving(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if self.serves():
                return True
            time.sleep(0.3)
        return False

    def tail(self, lines=LOG_TAIL_LINES):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(data[-lines:])


def zookeeper_members(workdir, args):
    classpath = args.zk_classpath or os.environ.get("ZK_CLASSPATH")
    if not classpath:
        jars = [os.path.join("/usr/share/java", j) for j in ZK_JARS]
        classpath = ":".join(j for j in jars if os.path.exists(j))
    java = os.environ.get("JAVA", shutil.which("java") or "/usr/bin/java")
    if args.serve or args.jvm_as_shipped:
        # As zkServer.sh starts it (ZK_SERVER_HEAP defaults to 1000 MB; the JVM's default
        # collector and tiered JIT): a benchmark measures ZooKeeper as operators run it.
        jvm_flags = ["-Xmx1000m"]
    else:
        # Fast start for the suite's short-lived members.
        jvm_flags = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]
    ports = free_ports(12 + (24 if args.links else 0))
    client_ports, peer_ports, secure_ports = ports[:3], ports[3:9], ports[9:12]
    link_ports = iter(ports[12:])
    tls = args.tls

    # The election proxy of each directed link, by (src, dst).
    election_proxy = {}

    def back_to(src, dst):
        """The address a member of higher id dials back on an election connection from `src`:
        the election proxy of the link dst -> src (see linkproxy.zookeeper_election_address)."""
        return lambda: f"127.0.0.1:{election_proxy[(dst, src)]}"

    def server_lines(me):
        """Member `me`'s view: its own quorum and election ports, the others' proxies."""
        lines = []
        for j in range(3):
            quorum, election = peer_ports[2 * j], peer_ports[2 * j + 1]
            if args.links and j != me:
                pq, pe = next(link_ports), next(link_ports)
                election_proxy[(me + 1, j + 1)] = pe
                args.links.add(me + 1, j + 1, pq, quorum)
                args.links.add(
                    me + 1, j + 1, pe, election, zookeeper_election_address(back_to(me + 1, j + 1))
                )
                quorum, election = pq, pe
            lines.append(f"server.{j + 1}=127.0.0.1:{quorum}:{election}")
        return lines

    members = []
    for i in range(3):
        mid = i + 1
        data_dir = os.path.join(workdir, f"member{mid}")
        os.makedirs(data_dir)
        with open(os.path.join(data_dir, "myid"), "w") as f:
            f.write(f"{mid}\n")
        cfg = os.path.join(workdir, f"zoo{mid}.cfg")
        with open(cfg, "w") as f:
            f.write(
                "\n".join(
                    [
                        "tickTime=2000",
                        "initLimit=5",
                        "syncLimit=2",
                        f"dataDir={data_dir}",
                        f"clientPort={client_ports[i]}",
                        "clientPortAddress=127.0.0.1",
                        "4lw.commands.whitelist=*",
                        # kazoo's own test harness runs ZooKeeper so; zkraft serves
                        # reconfig by default (only the super user may use it). Not
                        # behind proxies: each member's view of the others differs.
                        f"reconfigEnabled={'false' if args.links else 'true'}",
                        # ZooKeeper's read-only server needs local sessions (kazoo's
                        # harness turns them on for its read-only test only, too).
                        *(
                            ["localSessionsEnabled=true", "localSessionsUpgradingEnabled=true"]
                            if os.environ.get("ZK_READ_ONLY_TESTS")
                            else []
                        ),
                        "admin.enableServer=false",
                        "maxClientCnxns=0",
                        *(
                            [
                                f"secureClientPort={secure_ports[i]}",
                                "secureClientPortAddress=127.0.0.1",
                            ]
                            if tls
                            else []
                        ),
                        *server_lines(i),
                    ]
                )
                + "\n"
            )
        argv = [
            java,
            *jvm_flags,
            # More system properties for a run's own needs (the import check's snapCount).
            *shlex.split(os.environ.get("ZK_JVM_ARGS", "")),
            "-Djava.net.preferIPv4Stack=true",
            "-Dzookeeper.extendedTypesEnabled=true",
            # As kazoo's own harness runs it: a member without a quorum serves read-only
            # clients (zkraft: --read-only-mode).
            "-Dreadonlymode.enabled=true",
            # Containers and TTL nodes are reaped by a periodic check (60 s by default).
            "-Dznode.container.checkIntervalMs=1000",
            f"-Dzookeeper.DigestAuthenticationProvider.superDigest="
            f"{super_digest(SUPER_USER, SUPER_PASSWORD)}",
            # SASL DIGEST-MD5 logins with the JAAS file's users, as kazoo's harness runs it.
            f"-Djava.security.auth.login.config={write_jaas(workdir)}",
            "-Dzookeeper.authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
            "-Dzookeeper.superUser=super",
            *(
                [
                    # Its TLS port is served by the Netty connection factory only.
                    "-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
                    f"-Dzookeeper.ssl.keyStore.location={tls['keystore']}",
                    "-Dzookeeper.ssl.keyStore.type=PEM",
                    f"-Dzookeeper.ssl.trustStore.location={tls['ca']}",
                    "-Dzookeeper.ssl.trustStore.type=PEM",
                ]
                if tls
                else []
            ),
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-cp",
            classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            cfg,
        ]
        members.append(
            Member(mid, client_ports[i], argv, workdir, os.path.join(workdir, f"member{mid}.log"))
        )
        members[-1].secure_port = secure_ports[i]
    return members


def zkraft_members(workdir, args):
    binary = args.zkraft_server or os.environ.get("ZKRAFT_SERVER") or os.path.join(
        REPO, "target", "debug", "zkraft-server"
    )
    if not os.path.exists(binary):
        raise SystemExit(f"run.py: no zkraft-server at {binary} (build it, or set ZKRAFT_SERVER)")
    extra = shlex.split(os.environ.get("ZKRAFT_ARGS", ""))
    ports = free_ports(15 + (6 if args.links else 0))
    client_ports, raft_ports, secure_ports = ports[:3], ports[3:6], ports[6:9]
    metrics_ports, admin_ports = ports[9:12], ports[12:15]
    link_ports = iter(ports[15:])
    tls = args.tls
    tls_args = (
        [
            "--peer-tls",
            "--tls-cert",
            tls["cert"],
            "--tls-key",
            tls["key"],
            "--tls-ca",
            tls["ca"],
        ]
        if tls
        else []
    )

    def peers_of(me):
        """Member `me`'s view: its own raft address, the others' (or their proxies)."""
        view = []
        for j in range(3):
            port = raft_ports[j]
            if args.links and j != me:
                proxy = next(link_ports)
                args.links.add(me + 1, j + 1, proxy, port)
                port = proxy
            view.append(f"{j + 1}=127.0.0.1:{port}")
        return ",".join(view)
    common = [
        "--4lw-whitelist",
        "*",
        "--read-only-mode",
        # Containers and TTL znodes are reaped every second, as the ZooKeeper members
        # are configured (znode.container.checkIntervalMs).
        "--container-check-interval-ms",
        "1000",
        "--super-digest",
        super_digest(SUPER_USER, SUPER_PASSWORD),
        "--jaas-config",
        write_jaas(workdir),
        "--sasl-super-user",
        "super",
        *tls_args,
        *extra,
    ]
    # What a test needs to start more members of this ensemble (ZK_ZKRAFT).
    with open(os.path.join(workdir, "zkraft.json"), "w") as f:
        json.dump(
            {
                "binary": os.path.abspath(binary),
                "args": common,
                "peers": {str(i + 1): f"127.0.0.1:{raft_ports[i]}" for i in range(3)},
                "workdir": workdir,
            },
            f,
        )
    members = []
    for i in range(3):
        mid = i + 1
        data_dir = os.path.join(workdir, f"member{mid}")
        os.makedirs(data_dir)
        argv = [
            os.path.abspath(binary),
            "--id",
            str(mid),
            "--peers",
            peers_of(i),
            "--data-dir",
            data_dir,
            "--client-addr",
            f"127.0.0.1:{client_ports[i]}",
            *(["--secure-client-addr", f"127.0.0.1:{secure_ports[i]}"] if tls else []),
            "--metrics-addr",
            f"127.0.0.1:{metrics_ports[i]}",
            "--admin-addr",
            f"127.0.0.1:{admin_ports[i]}",
            "--admin-peers",
            ",".join(f"http://127.0.0.1:{p}" for j, p in enumerate(admin_ports) if j != i),
            *common,
        ]
        members.append(
            Member(mid, client_ports[i], argv, workdir, os.path.join(workdir, f"member{mid}.log"))
        )
        members[-1].secure_port = secure_ports[i]
        members[-1].metrics_port = metrics_ports[i]
        members[-1].admin_port = admin_ports[i]
    return members


def write_jaas(workdir):
    """The JAAS file of ZooKeeper's SASL DIGEST-MD5 users (zkraft reads the same file)."""
    path = os.path.join(workdir, "jaas.conf")
    users = "\n".join(f'    user_{name}="{password}"' for name, password in SASL_USERS.items())
    with open(path, "w") as f:
        f.write(
            "Server {\n"
            "    org.apache.zookeeper.server.auth.DigestLoginModule required\n"
            f"{users};\n"
            "};\n"
        )
    with open(os.path.join(workdir, "sasl-users.json"), "w") as f:
        json.dump(SASL_USERS, f)
    return path


def make_tls(workdir):
    """The test certificates (certs.py): an authority, the members' certificate, a client's."""
    directory = os.path.join(workdir, "tls")
    os.makedirs(directory)
    authority = make_authority(directory, "ca")
    cert, key = make_signed(directory, "member", authority)
    make_signed(directory, "client", authority)
    # ZooKeeper's PEM key store: the key and the certificate in one file.
    keystore = os.path.join(directory, "member-keystore.pem")
    with open(keystore, "w") as out:
        for path in (key, cert):
            with open(path) as f:
                out.write(f.read())
    return {"dir": directory, "ca": authority[0], "cert": cert, "key": key, "keystore": keystore}


def serve(members):
    """Prints ZK_HOSTS=... and waits until stdin closes (or SIGTERM / SIGINT ends main).

    Returns 0, or 1 when a member exited on its own while serving (its log tail is printed).
    """
    print("ZK_HOSTS=" + ",".join(f"127.0.0.1:{m.client_port}" for m in members), flush=True)
    for m in members:
        print(f"ZK_MEMBER={m.id} 127.0.0.1:{m.client_port} pid {m.proc.pid} log {m.log_path}", flush=True)
    stdin_closed = threading.Event()

    def watch_stdin():
        try:
            while os.read(sys.stdin.fileno(), 4096):
                pass
        except OSError:
            pass
        stdin_closed.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    code = 0
    reported = set()
    try:
        while not stdin_closed.wait(0.5):
            for m in members:
                if not m.alive() and m.id not in reported:
                    reported.add(m.id)
                    code = 1
                    log(f"member {m.id} (pid {m.proc.pid}) exited while serving, status {m.proc.returncode}")
        log("standard input closed: stopping the ensemble")
    except SystemExit as e:  # SIGTERM / SIGINT: the requested way to stop too
        log(f"signal received (exit {e.code}): stopping the ensemble")
    return code


class Control(threading.Thread):
    """Takes "stop N" / "kill N" / "start N" on a unix socket, one command per connection.

    Each connection is served on a thread of its own, so that members can be started together
    (one member of three alone never serves); commands about the same member run one at a time.
    """

    def __init__(self, path, members, links=None):
        super().__init__(daemon=True)
        self.path = path
        self.links = links
        self.members = {m.id: m for m in members}
        self.locks = {m.id: threading.Lock() for m in members}
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.closing = threading.Event()

    def run(self):
        while not self.closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.serve_one, args=(conn,), daemon=True).start()

    def serve_one(self, conn):
        with conn:
            conn.settimeout(READY_TIMEOUT + 30)
            try:
                line = b""
                while not line.endswith(b"\n") and len(line) < 256:
                    chunk = conn.recv(256)
                    if not chunk:
                        break
                    line += chunk
                reply = self.handle(line.decode().strip())
                conn.sendall((reply + "\n").encode())
            except OSError:
                pass

    def handle_link(self, parts):
        """cut A B | delay A B MS | drop A B PERCENT | heal (--proxy only)."""
        if self.links is None:
            return "error no link proxies (run.py --proxy)"
        if parts == ["heal"]:
            self.links.heal()
            return "ok"
        want = 3 if parts[0] == "cut" else 4
        if len(parts) != want or not all(p.isdigit() for p in parts[1:]):
            return f"error bad command {' '.join(parts)!r}"
        src, dst = int(parts[1]), int(parts[2])
        proxies = self.links.on(src, dst)
        if not proxies:
            return f"error no link {src} -> {dst}"
        for p in proxies:
            if parts[0] == "cut":
                p.set_faults(cut=True)
            elif parts[0] == "delay":
                p.set_faults(delay=int(parts[3]) / 1000.0)
            else:
                p.set_faults(drop=min(int(parts[3]), 100) / 100.0)
        return "ok"

    def handle(self, line):
        parts = line.split()
        if parts and parts[0] in ("cut", "delay", "drop", "heal"):
            log(f"control: {line}")
            return self.handle_link(parts)
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in self.members:
            return f"error bad command {line!r}"
        verb, member = parts[0], self.members[int(parts[1])]
        if self.closing.is_set():
            return "error the harness is stopping"
        if verb in ("pause", "resume"):
            log(f"control: {line}")
            if not member.signal(signal.SIGSTOP if verb == "pause" else signal.SIGCONT):
                return "error the harness is stopping"
            return "ok"
        with self.locks[member.id]:
            log(f"control: {line}")
            if verb == "stop":
                member.stop()
                return "ok"
            if verb == "kill":
                member.stop(hard=True)
                return "ok"
            if verb == "launch":
                # Started, not waited for: a member that serves only once something else
                # happens (one removed from the ensemble, to be added again).
                if not member.start():
                    return "error the harness is stopping"
                return "ok"
            if verb == "start":
                if not member.start():
                    return "error the harness is stopping"
                if member.wait_serving(READY_TIMEOUT):
                    log(f"member {member.id} serves again")
                    return "ok"
                return f"error member {member.id} does not serve after {READY_TIMEOUT}s"
            return f"error unknown verb {verb!r}"

    def close(self):
        self.closing.set()
        try:
            self.sock.close()
        except OSError:
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["zookeeper", "zkraft"], required=True)
    parser.add_argument("--zk-classpath", help="classpath of ZooKeeper's jars")
    parser.add_argument("--zkraft-server", help="path of the zkraft-server binary")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="print ZK_HOSTS=... and serve until stdin closes or SIGTERM (no pytest)",
    )
    parser.add_argument("--workdir", help="parent directory of the temp dir (default: the system's)")
    parser.add_argument(
        "--proxy",
        action="store_true",
        help="put a TCP proxy on every link between members (control: cut, delay, drop, heal)",
    )
    parser.add_argument(
        "--jvm-as-shipped",
        action="store_true",
        help="run ZooKeeper's JVM as zkServer.sh does (as --serve does), not with fast-start flags",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds before pytest (or the --exec command) itself is stopped",
    )
    parser.add_argument(
        "--exec",
        dest="exec_cmd",
        metavar="CMD",
        nargs=argparse.REMAINDER,
        help="run CMD and its arguments (everything after --exec) instead of pytest, "
        "with the same environment; exit with its code",
    )
    args, pytest_args = parser.parse_known_args()

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)  # runs the cleanup in main's finally

    signal.signal(signal.SIGTERM, on_term)
    if args.serve:
        signal.signal(signal.SIGINT, on_term)
    if args.serve and pytest_args:
        parser.error(f"--serve runs no pytest: unexpected arguments {pytest_args}")
    if args.exec_cmd is not None:
        if not args.exec_cmd:
            parser.error("--exec needs a command")
        if args.serve:
            parser.error("--serve and --exec exclude each other")
        if pytest_args:
            parser.error(f"--exec runs no pytest: unexpected arguments {pytest_args}")
    if args.workdir:
        # Absolute: members run with the work dir as their working directory, and
        # ZooKeeper's config path must not be resolved against it a second time.
        args.workdir = os.path.abspath(args.workdir)
        os.makedirs(args.workdir, exist_ok=True)

    workdir = tempfile.mkdtemp(prefix="zkraft-kazoo-", dir=args.workdir)
    log(f"target {args.target}, work dir {workdir}")
    make = zookeeper_members if args.target == "zookeeper" else zkraft_members
    wants_tls = args.target == "zkraft" or os.environ.get("ZK_TLS_TESTS")
    args.tls = make_tls(workdir) if wants_tls and not args.serve else None
    args.links = Links() if args.proxy else None
    members = make(workdir, args)
    control = None
    code = 2
    started = time.monotonic()
    try:
        for m in members:
            m.start()
        deadline = time.monotonic() + READY_TIMEOUT
        for m in members:
            if not m.wait_serving(max(1.0, deadline - time.monotonic())):
                log(f"member {m.id} does not serve after {READY_TIMEOUT}s")
                return 2
        log(f"ensemble serves after {time.monotonic() - started:.1f}s")
        if args.serve:
            code = serve(members)
            return code

        members_file = os.path.join(workdir, "members.json")
        with open(members_file, "w") as f:
            json.dump([{"id": m.id, "host": "127.0.0.1", "port": m.client_port} for m in members], f)
        control_path = os.path.join(workdir, "control.sock")
        control = Control(control_path, members, args.links)
        control.start()

        env = dict(os.environ)
        env.update(
            ZK_HOSTS=",".join(f"127.0.0.1:{m.client_port}" for m in members),
            ZK_MEMBERS=members_file,
            ZK_CONTROL=control_path,
            ZK_SUPER_AUTH=f"{SUPER_USER}:{SUPER_PASSWORD}",
            ZK_TARGET=args.target,
            PYTHONDONTWRITEBYTECODE="1",
        )
        if args.links:
            env["ZK_PROXY"] = "1"
        env["ZK_SASL_USERS"] = os.path.join(workdir, "sasl-users.json")
        if args.target == "zkraft":
            env["ZK_METRICS"] = ",".join(f"127.0.0.1:{m.metrics_port}" for m in members)
            env["ZK_ADMIN"] = ",".join(f"127.0.0.1:{m.admin_port}" for m in members)
        if args.tls:
            env.update(
                ZK_SECURE_HOSTS=",".join(f"127.0.0.1:{m.secure_port}" for m in members),
                ZK_TLS_DIR=args.tls["dir"],
            )
        zkraft_json = os.path.join(workdir, "zkraft.json")
        if os.path.exists(zkraft_json):
            env["ZK_ZKRAFT"] = zkraft_json
        if args.exec_cmd is not None:
            cmd, cwd, what = args.exec_cmd, None, os.path.basename(args.exec_cmd[0])
        else:
            cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", HERE, *pytest_args]
            cwd, what = HERE, "pytest"
        log(f"running {shlex.join(cmd)}")
        try:
            suite = subprocess.Popen(cmd, cwd=cwd, env=env)
        except OSError as e:
            log(f"cannot run {what}: {e}")
            code = 127
            return code
        try:
            code = suite.wait(timeout=args.timeout)
        except SystemExit:
            # SIGTERM: the suite goes with the ensemble (by its pid), then main's cleanup runs.
            if suite.poll() is None:
                suite.terminate()
                try:
                    suite.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    suite.kill()
            raise
        except subprocess.TimeoutExpired:
            log(f"{what} still running after {args.timeout}s: stopping it")
            suite.terminate()
            try:
                suite.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                suite.kill()
                suite.wait(timeout=STOP_GRACE)
            code = 3
        return code
    finally:
        if control is not None:
            control.close()
        if args.links:
            args.links.close()
        for m in members:
            m.stop(retire=True)
        if code != 0:
            for m in members:
                print(f"\n---- member {m.id} log tail ({m.log_path}) ----\n{m.tail()}", flush=True)
        log(f"exit {code} after {time.monotonic() - started:.1f}s")
        if args.keep or code != 0:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
