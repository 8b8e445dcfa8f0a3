import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketAddress;
import java.net.SocketTimeoutException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.utils.DefaultZookeeperFactory;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooKeeper;

/**
 * The Curator compatibility suite (tests/curator/README.md): Apache Curator 5.4 recipes, caches,
 * watches, transactions, containers, TTL znodes, ACLs and reconnects against the 3-member
 * ensemble that tests/kazoo/run.py started (ZK_HOSTS, ZK_MEMBERS, ZK_CONTROL, ZK_SUPER_AUTH,
 * ZK_TARGET). Every check is independent, under a root znode of its own, and bounded in time.
 *
 * <pre>
 *   java -cp CLASSPATH CuratorSuite [--list] [NAME...]   (NAME: run only the checks named so)
 * </pre>
 *
 * Prints "PASS name (T s)" or "FAIL name: reason (T s)" per check, then "N passed, M failed" on a
 * line of its own; exits 1 when a check failed, 2 on bad arguments or environment.
 */
public final class CuratorSuite {
    /** One named check; its body gets a fresh context (clients, root znode) that is cleaned up. */
    record Check(String name, int timeoutSeconds, Body body) {}

    interface Body {
        void run(Ctx ctx) throws Exception;
    }

    static final int DEFAULT_TIMEOUT_S = 60;
    static final int CLEANUP_TIMEOUT_S = 30;

    public static void main(String[] args) throws Exception {
        // The clients' own log (Curator, ZooKeeper's ClientCnxn): into $CURATOR_LOG at level
        // info when it is set; else warnings on stderr, without ClientCnxn's, which warns each
        // time a server closes a connection (every client close, every kill).
        String logFile = System.getenv("CURATOR_LOG");
        if (logFile != null && !logFile.isEmpty()) {
            defaultProperty("org.slf4j.simpleLogger.logFile", logFile);
            defaultProperty("org.slf4j.simpleLogger.defaultLogLevel", "info");
        } else {
            defaultProperty("org.slf4j.simpleLogger.logFile", "System.err");
            defaultProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
            defaultProperty("org.slf4j.simpleLogger.log.org.apache.zookeeper.ClientCnxn", "error");
        }
        defaultProperty("org.slf4j.simpleLogger.showDateTime", "true");
        defaultProperty("org.slf4j.simpleLogger.dateTimeFormat", "HH:mm:ss.SSS");
        defaultProperty("org.slf4j.simpleLogger.showThreadName", "true");
        // No SASL (neither server has it configured); every request of the ZooKeeper client
        // bounded in time (a server that never answers fails the request instead of hanging).
        defaultProperty("zookeeper.sasl.client", "false");
        defaultProperty("zookeeper.request.timeout", "30000");

        List<Check> all = new ArrayList<>();
        RecipeChecks.register(all);
        CacheChecks.register(all);
        ZnodeChecks.register(all);
        ReconnectChecks.register(all); // last: they stop and kill members

        List<String> wanted = new ArrayList<>();
        for (String a : args) {
            if (a.equals("--list")) {
                for (Check c : all) System.out.println(c.name());
                return;
            } else if (a.startsWith("-")) {
                System.err.println("usage: CuratorSuite [--list] [CHECK...]");
                System.exit(2);
            } else {
                wanted.add(a);
            }
        }
        List<Check> selected = new ArrayList<>();
        for (Check c : all) {
            if (wanted.isEmpty() || wanted.contains(c.name())) selected.add(c);
        }
        for (String w : wanted) {
            if (all.stream().noneMatch(c -> c.name().equals(w))) {
                System.err.println("no such check: " + w + " (--list lists them)");
                System.exit(2);
            }
        }

        Env env;
        try {
            env = Env.fromEnvironment();
        } catch (Exception e) {
            System.err.println("CuratorSuite: " + e.getMessage());
            System.exit(2);
            return;
        }
        System.out.println("Curator suite: target " + env.target + ", hosts " + env.hosts
                + ", " + selected.size() + " checks; client log: "
                + System.getProperty("org.slf4j.simpleLogger.logFile"));

        int passed = 0, failed = 0;
        long suiteStart = System.nanoTime();
        for (Check c : selected) {
            long start = System.nanoTime();
            String failure = runOne(env, c);
            double secs = (System.nanoTime() - start) / 1e9;
            String took = String.format(Locale.ROOT, "(%.1f s)", secs);
            if (failure == null) {
                passed++;
                System.out.println("PASS " + c.name() + " " + took);
            } else {
                failed++;
                System.out.println("FAIL " + c.name() + ": " + failure + " " + took);
            }
            System.out.flush();
        }
        System.out.println(String.format(Locale.ROOT, "(%d checks in %.1f s against %s)",
                selected.size(), (System.nanoTime() - suiteStart) / 1e9, env.target));
        System.out.println(passed + " passed, " + failed + " failed");
        System.out.flush();
        System.exit(failed == 0 ? 0 : 1);
    }

    static void defaultProperty(String key, String value) {
        if (System.getProperty(key) == null) System.setProperty(key, value);
    }

    /** Runs a check on a thread of its own; null when it passed, else the reason (one line). */
    static String runOne(Env env, Check check) {
        ExecutorService runner = Executors.newSingleThreadExecutor(daemon("check-" + check.name()));
        Ctx ctx = new Ctx(env, check.name());
        String failure = null;
        try {
            Future<?> f = runner.submit(() -> {
                check.body().run(ctx);
                return null;
            });
            try {
                f.get(check.timeoutSeconds(), TimeUnit.SECONDS);
            } catch (TimeoutException e) {
                f.cancel(true);
                failure = "timed out after " + check.timeoutSeconds() + " s" + ctx.lastStep();
            } catch (ExecutionException e) {
                failure = describe(e.getCause()) + ctx.lastStep();
                if (!(e.getCause() instanceof AssertionError)) {
                    StringWriter sw = new StringWriter();
                    e.getCause().printStackTrace(new PrintWriter(sw));
                    System.out.print(indent(sw.toString()));
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            failure = "interrupted";
        } finally {
            // Clean up (recipes, clients, the root znode) within a bound of its own, on a
            // thread of its own (a check that ignored its interruption may still hold its own).
            runner.shutdownNow();
            ExecutorService cleaner = Executors.newSingleThreadExecutor(daemon("cleanup-" + check.name()));
            Future<?> cleanup = cleaner.submit(ctx::close);
            try {
                cleanup.get(CLEANUP_TIMEOUT_S, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (ExecutionException | TimeoutException e) {
                cleanup.cancel(true);
                ctx.note("cleanup did not finish: " + describe(e));
            }
            cleaner.shutdownNow();
        }
        return failure;
    }

    static String describe(Throwable t) {
        if (t instanceof ExecutionException && t.getCause() != null) t = t.getCause();
        if (t instanceof AssertionError) return oneLine(t.getMessage());
        if (t instanceof KeeperException ke) {
            return oneLine("KeeperException " + ke.code() + " (" + ke.code().intValue() + ")"
                    + (ke.getPath() != null ? " on " + ke.getPath() : ""));
        }
        return oneLine(t.getClass().getName() + ": " + t.getMessage());
    }

    static String oneLine(String s) {
        return s == null ? "(no message)" : s.replace('\n', ' ').replace('\r', ' ');
    }

    static String indent(String s) {
        StringBuilder sb = new StringBuilder();
        for (String line : s.split("\n")) sb.append("    | ").append(line).append('\n');
        return sb.toString();
    }

    static ThreadFactory daemon(String name) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, name + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }

    // ----- assertions and bounded waits -----

    static void check(boolean condition, String what) {
        if (!condition) throw new AssertionError(what);
    }

    static void checkEquals(Object expected, Object actual, String what) {
        if (expected == null ? actual != null : !expected.equals(actual)) {
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
        }
    }

    interface Probe {
        boolean test() throws Exception;
    }

    /** Polls until `probe` holds; fails after `timeoutMs` with `what` (and the last exception). */
    static void waitUntil(String what, long timeoutMs, Probe probe) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        Throwable last = null;
        while (true) {
            try {
                if (probe.test()) return;
            } catch (InterruptedException e) {
                throw e;
            } catch (Exception e) {
                last = e;
            }
            if (System.nanoTime() >= deadline) {
                throw new AssertionError("timed out after " + timeoutMs + " ms waiting for " + what
                        + (last != null ? " (last error: " + describe(last) + ")" : ""));
            }
            Thread.sleep(25);
        }
    }

    /** Runs `action`, which must fail with the KeeperException of code `code`. */
    static KeeperException expectKeeper(KeeperException.Code code, String what, Callable<?> action)
            throws Exception {
        try {
            Object r = action.call();
            throw new AssertionError(what + ": expected " + code + " (" + code.intValue()
                    + "), but it succeeded" + (r != null ? " with " + r : ""));
        } catch (KeeperException e) {
            if (e.code() != code) {
                throw new AssertionError(what + ": expected " + code + " (" + code.intValue()
                        + "), got " + e.code() + " (" + e.code().intValue() + ")");
            }
            return e;
        }
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String str(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    // ----- the ZooKeeper handle under a Curator client -----

    static ZooKeeper zk(CuratorFramework c) throws Exception {
        return c.getZookeeperClient().getZooKeeper();
    }

    static long sessionId(CuratorFramework c) throws Exception {
        return zk(c).getSessionId();
    }

    /** The server address the client's connection is on (null while disconnected). */
    static InetSocketAddress remote(CuratorFramework c) throws Exception {
        // ZooKeeper's own test hook (protected): the socket of the current connection.
        Method m = ZooKeeper.class.getDeclaredMethod("testableRemoteSocketAddress");
        m.setAccessible(true);
        try {
            SocketAddress a = (SocketAddress) m.invoke(zk(c));
            return (InetSocketAddress) a;
        } catch (InvocationTargetException e) {
            return null; // no connection right now
        }
    }

    /** The paths the ZooKeeper handle holds a data watch on (what it re-sends in setWatches). */
    @SuppressWarnings("unchecked")
    static List<String> clientDataWatches(CuratorFramework c) throws Exception {
        Method m = ZooKeeper.class.getDeclaredMethod("getDataWatches");
        m.setAccessible(true);
        return (List<String>) m.invoke(zk(c));
    }

    /** Waits until the client completed a background sync of `path` with the leader. */
    static void sync(CuratorFramework c, String path) throws Exception {
        CountDownLatch done = new CountDownLatch(1);
        AtomicInteger rc = new AtomicInteger();
        c.sync().inBackground((client, event) -> {
            rc.set(event.getResultCode());
            done.countDown();
        }).forPath(path);
        if (!done.await(20, TimeUnit.SECONDS)) throw new AssertionError("sync(" + path + ") timed out");
        if (rc.get() != 0) throw KeeperException.create(KeeperException.Code.get(rc.get()), path);
    }

    /** A list as toString() shows it, its middle left out when it is long (a reconnect loop). */
    static String brief(List<?> list) {
        if (list.size() <= 12) return list.toString();
        List<String> head = new ArrayList<>(), tail = new ArrayList<>();
        for (Object o : list.subList(0, 6)) head.add(String.valueOf(o));
        for (Object o : list.subList(list.size() - 2, list.size())) tail.add(String.valueOf(o));
        return "[" + String.join(", ", head) + ", ... " + list.size() + " in all ..., " + String.join(", ", tail) + "]";
    }

    static String sid(long sessionId) {
        return "0x" + Long.toHexString(sessionId);
    }

    // ----- the environment run.py gives -----

    static final class Env {
        final String hosts;
        final String target;
        final String superAuth;
        final String control;
        final Map<Integer, Integer> memberPorts = new LinkedHashMap<>(); // id -> client port

        Env(String hosts, String target, String superAuth, String control) {
            this.hosts = hosts;
            this.target = target;
            this.superAuth = superAuth;
            this.control = control;
        }

        static Env fromEnvironment() throws Exception {
            String hosts = System.getenv("ZK_HOSTS");
            if (hosts == null || hosts.isEmpty()) {
                throw new IllegalStateException("ZK_HOSTS is not set: run it through tests/kazoo/run.py --exec");
            }
            Env env = new Env(hosts, System.getenv().getOrDefault("ZK_TARGET", "unknown"),
                    System.getenv("ZK_SUPER_AUTH"), System.getenv("ZK_CONTROL"));
            String members = System.getenv("ZK_MEMBERS");
            if (members != null) {
                String json = Files.readString(Path.of(members));
                Matcher obj = Pattern.compile("\\{[^}]*\\}").matcher(json);
                while (obj.find()) {
                    Matcher id = Pattern.compile("\"id\"\\s*:\\s*(\\d+)").matcher(obj.group());
                    Matcher port = Pattern.compile("\"port\"\\s*:\\s*(\\d+)").matcher(obj.group());
                    if (id.find() && port.find()) {
                        env.memberPorts.put(Integer.parseInt(id.group(1)), Integer.parseInt(port.group(1)));
                    }
                }
            } else {
                int i = 1;
                for (String hp : hosts.split(",")) {
                    env.memberPorts.put(i++, Integer.parseInt(hp.substring(hp.lastIndexOf(':') + 1)));
                }
            }
            return env;
        }

        int memberOfPort(int port) {
            for (Map.Entry<Integer, Integer> e : memberPorts.entrySet()) {
                if (e.getValue() == port) return e.getKey();
            }
            throw new AssertionError("port " + port + " is no member's client port " + memberPorts);
        }

        int port(int member) {
            return memberPorts.get(member);
        }

        /** A four-letter word on a member's client port, read until the server closes (bounded). */
        String fourLetter(int member, String word) throws Exception {
            try (Socket s = new Socket()) {
                s.connect(new InetSocketAddress("127.0.0.1", port(member)), 5000);
                s.setSoTimeout(5000);
                OutputStream out = s.getOutputStream();
                out.write(bytes(word));
                out.flush();
                InputStream in = s.getInputStream();
                ByteArrayOutputStream buf = new ByteArrayOutputStream();
                byte[] chunk = new byte[8192];
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                try {
                    int n;
                    while (System.nanoTime() < deadline && (n = in.read(chunk)) >= 0) buf.write(chunk, 0, n);
                } catch (SocketTimeoutException e) {
                    // what came so far
                }
                return buf.toString(StandardCharsets.UTF_8);
            }
        }

        /** "Mode: leader|follower" from a member's srvr, or "?" . */
        String mode(int member) {
            try {
                for (String line : fourLetter(member, "srvr").split("\n")) {
                    if (line.startsWith("Mode:")) return line.substring(5).trim();
                }
            } catch (Exception e) {
                return "? (" + describe(e) + ")";
            }
            return "?";
        }

        /** The paths `wchc` on a member lists under this session (empty when none). */
        List<String> watchesOf(int member, long sessionId) throws Exception {
            List<String> out = new ArrayList<>();
            boolean in = false;
            for (String line : fourLetter(member, "wchc").split("\n")) {
                if (!line.startsWith("\t")) {
                    in = line.trim().equalsIgnoreCase(sid(sessionId));
                } else if (in) {
                    out.add(line.substring(1).trim());
                }
            }
            return out;
        }

        /**
         * One command to run.py's control socket ("stop N", "kill N", "start N"); fails unless
         * it answers "ok" within `timeoutS` seconds.
         */
        void control(String verb, int member, int timeoutS) throws Exception {
            if (control == null) throw new AssertionError("no ZK_CONTROL: the ensemble was not started by run.py");
            String line = verb + " " + member;
            ExecutorService waiter = Executors.newSingleThreadExecutor(daemon("control"));
            AtomicReference<SocketChannel> chan = new AtomicReference<>();
            try {
                Future<String> reply = waiter.submit(() -> {
                    try (SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
                        chan.set(ch);
                        ch.connect(UnixDomainSocketAddress.of(control));
                        ch.write(ByteBuffer.wrap(bytes(line + "\n")));
                        ByteBuffer buf = ByteBuffer.allocate(1024);
                        while (buf.hasRemaining()) {
                            if (ch.read(buf) < 0) break;
                            String sofar = new String(buf.array(), 0, buf.position(), StandardCharsets.UTF_8);
                            if (sofar.endsWith("\n")) break;
                        }
                        return new String(buf.array(), 0, buf.position(), StandardCharsets.UTF_8).trim();
                    }
                });
                String r;
                try {
                    r = reply.get(timeoutS, TimeUnit.SECONDS);
                } catch (TimeoutException e) {
                    SocketChannel ch = chan.get();
                    if (ch != null) ch.close();
                    throw new AssertionError("harness: no answer to '" + line + "' within " + timeoutS + " s");
                }
                if (!r.equals("ok")) throw new AssertionError("harness: " + line + ": " + r);
            } finally {
                waiter.shutdownNow();
            }
        }

        /** The same command for several members at once, each on a connection of its own. */
        void controlAll(String verb, List<Integer> members, int timeoutS) throws Exception {
            ExecutorService pool = Executors.newFixedThreadPool(members.size(), daemon("control-all"));
            try {
                List<Future<?>> fs = new ArrayList<>();
                for (int m : members) {
                    fs.add(pool.submit(() -> {
                        control(verb, m, timeoutS);
                        return null;
                    }));
                }
                List<String> errors = new ArrayList<>();
                for (Future<?> f : fs) {
                    try {
                        f.get(timeoutS + 5, TimeUnit.SECONDS);
                    } catch (ExecutionException e) {
                        errors.add(describe(e.getCause()));
                    } catch (TimeoutException e) {
                        errors.add("no answer within " + timeoutS + " s");
                    }
                }
                if (!errors.isEmpty()) throw new AssertionError(String.join("; ", errors));
            } finally {
                pool.shutdownNow();
            }
        }
    }

    // ----- a check's context -----

    /** Records what a client's ZooKeeper handle and its Curator listener saw, in order. */
    static final class Tracked {
        final CuratorFramework client;
        /** Session events (type None) as the ZooKeeper handle's default watcher got them. */
        final Events<Watcher.Event.KeeperState> raw;
        /** What Curator's connection-state listener got. */
        final Events<ConnectionState> states;

        Tracked(CuratorFramework client, Events<Watcher.Event.KeeperState> raw, Events<ConnectionState> states) {
            this.client = client;
            this.raw = raw;
            this.states = states;
        }

        /**
         * Returns once the handle's event thread has handled every event queued so far: an
         * asynchronous exists() whose callback runs on that thread, after the earlier events.
         */
        void drainEvents() throws Exception {
            CountDownLatch done = new CountDownLatch(1);
            zk(client).exists("/", false, (rc, path, c, stat) -> done.countDown(), null);
            if (!done.await(30, TimeUnit.SECONDS)) throw new AssertionError("the client's event thread did not answer within 30 s");
        }
    }

    static final class Ctx implements AutoCloseable {
        final Env env;
        final String name;
        private final String rootPath;
        private boolean rootCreated;
        private final Deque<AutoCloseable> closeables = new ArrayDeque<>();
        private final ExecutorService pool;
        private CuratorFramework admin;
        private volatile String step = "";

        Ctx(Env env, String name) {
            this.env = env;
            this.name = name;
            this.rootPath = "/curator-compat/" + name + "-" + UUID.randomUUID().toString().substring(0, 8);
            this.pool = Executors.newCachedThreadPool(daemon(name));
        }

        /** Says what the check is doing (shown with a failure or a timeout). */
        void step(String what) {
            step = what;
        }

        String currentStep() {
            return step;
        }

        String lastStep() {
            return step.isEmpty() ? "" : " [at: " + step + "]";
        }

        void note(String msg) {
            System.out.println("  " + name + ": " + msg);
        }

        /** This check's own persistent root znode, created on first use (by the admin client). */
        synchronized String root() throws Exception {
            if (!rootCreated) {
                admin().create().creatingParentsIfNeeded().forPath(rootPath);
                rootCreated = true;
            }
            return rootPath;
        }

        /** A client with the super user's credentials (ZK_SUPER_AUTH) when there are any. */
        synchronized CuratorFramework admin() throws Exception {
            if (admin == null) {
                admin = client(b -> {
                    if (env.superAuth != null) b.authorization("digest", bytes(env.superAuth));
                });
            }
            return admin;
        }

        CuratorFramework client() throws Exception {
            return client(b -> {});
        }

        /** A started, connected client of the whole ensemble (closed after the check). */
        CuratorFramework client(Consumer<CuratorFrameworkFactory.Builder> tweak) throws Exception {
            return tracked(tweak).client;
        }

        Tracked tracked(Consumer<CuratorFrameworkFactory.Builder> tweak) throws Exception {
            Events<Watcher.Event.KeeperState> raw = new Events<>();
            Events<ConnectionState> states = new Events<>();
            DefaultZookeeperFactory factory = new DefaultZookeeperFactory();
            CuratorFrameworkFactory.Builder b = CuratorFrameworkFactory.builder()
                    .connectString(env.hosts)
                    .sessionTimeoutMs(15000)
                    .connectionTimeoutMs(10000)
                    .retryPolicy(new ExponentialBackoffRetry(100, 6, 1000))
                    .zookeeperFactory((cs, timeout, watcher, ro) -> factory.newZooKeeper(cs, timeout, event -> {
                        if (event.getType() == Watcher.Event.EventType.None) raw.add(event.getState());
                        watcher.process(event);
                    }, ro));
            tweak.accept(b);
            CuratorFramework c = b.build();
            c.getConnectionStateListenable().addListener((client, state) -> states.add(state));
            closing(c);
            c.start();
            if (!c.blockUntilConnected(20, TimeUnit.SECONDS)) {
                throw new AssertionError("a client did not connect to " + env.hosts + " within 20 s");
            }
            // Curator's listeners run on a thread of their own: CONNECTED reaches ours a bit
            // later, and a check that counts state changes from here on must not see it.
            states.waitFor("Curator's CONNECTED", 10_000, l -> l.contains(ConnectionState.CONNECTED));
            return new Tracked(c, raw, states);
        }

        /** Closed (in reverse order of registration) after the check. */
        <T extends AutoCloseable> T closing(T c) {
            synchronized (closeables) {
                closeables.push(c);
            }
            return c;
        }

        /** Runs `task` on a thread of this check (interrupted at cleanup if still running). */
        <T> Future<T> async(Callable<T> task) {
            return pool.submit(task);
        }

        @Override
        public void close() {
            pool.shutdownNow();
            CuratorFramework cleaner = admin;
            List<AutoCloseable> all;
            synchronized (closeables) {
                all = new ArrayList<>(closeables);
                closeables.clear();
            }
            for (AutoCloseable c : all) {
                if (c == cleaner) continue;
                try {
                    c.close();
                } catch (Exception e) {
                    // already closed by the check, or its connection is gone: nothing to do
                }
            }
            if (cleaner != null) {
                if (rootCreated) {
                    try {
                        cleaner.delete().deletingChildrenIfNeeded().forPath(rootPath);
                    } catch (Exception e) {
                        // best effort: the ensemble is thrown away after the run
                    }
                }
                cleaner.close();
            }
        }
    }

    /** A thread-safe list of events with bounded waits. */
    static final class Events<T> {
        private final List<T> items = new ArrayList<>();

        synchronized void add(T item) {
            items.add(item);
            notifyAll();
        }

        synchronized List<T> snapshot() {
            return new ArrayList<>(items);
        }

        synchronized int size() {
            return items.size();
        }

        /** Waits until `predicate` holds for the list; returns a copy of it. */
        synchronized List<T> waitFor(String what, long timeoutMs, Predicate<List<T>> predicate)
                throws InterruptedException {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
            while (!predicate.test(items)) {
                long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
                if (left <= 0) {
                    throw new AssertionError("timed out after " + timeoutMs + " ms waiting for " + what + "; have " + items);
                }
                wait(left);
            }
            return new ArrayList<>(items);
        }

        List<T> waitCount(String what, int n, long timeoutMs) throws InterruptedException {
            return waitFor(what + " (" + n + " events)", timeoutMs, l -> l.size() >= n);
        }

        List<T> since(int index) {
            List<T> all = snapshot();
            return all.subList(Math.min(index, all.size()), all.size());
        }
    }
}
