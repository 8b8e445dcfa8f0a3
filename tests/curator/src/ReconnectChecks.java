import java.net.InetSocketAddress;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.RetryNTimes;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.Watcher.Event.KeeperState;
import org.apache.zookeeper.data.Stat;

/**
 * A client's connection under disturbance: reconfig refused without dropping the connection,
 * the client's member SIGKILLed (the session, its ephemeral and its watches move to another
 * member), and every member stopped for longer than the session timeout (LOST, then a new
 * session). These run last: they stop and kill members (through run.py's ZK_CONTROL), and each
 * starts by making sure all three members serve.
 */
final class ReconnectChecks {
    private ReconnectChecks() {}

    static void register(List<CuratorSuite.Check> checks) {
        checks.add(new CuratorSuite.Check("reconfig-refused", 240, ReconnectChecks::reconfigRefused));
        checks.add(new CuratorSuite.Check("failover-kill", 300, ReconnectChecks::failoverKill));
        checks.add(new CuratorSuite.Check("all-members-down", 300, ReconnectChecks::allMembersDown));
    }

    static final String CONFIG = "/zookeeper/config";

    /** Problems found along the way: the check goes on to report them all, then fails. */
    static final class Findings {
        final List<String> problems = new ArrayList<>();

        void expect(boolean ok, String problem) {
            if (!ok) problems.add(problem);
        }

        void problem(String p) {
            problems.add(p);
        }

        /** Fails with every problem, and `context` (what the client saw) when there are any. */
        void done(String context) {
            if (!problems.isEmpty()) throw new AssertionError(String.join("; ", problems) + " -- " + context);
        }
    }

    static double secondsSince(long nanos) {
        return (System.nanoTime() - nanos) / 1e9;
    }

    static String secs(double s) {
        return String.format(Locale.ROOT, "%.1f s", s);
    }

    /** Starts every member that is not running (run.py: a no-op for one that serves). */
    static void allMembersUp(CuratorSuite.Ctx ctx) throws Exception {
        ctx.env.controlAll("start", new ArrayList<>(ctx.env.memberPorts.keySet()), 90);
    }

    static <T> List<T> after(List<T> list, int index) {
        return new ArrayList<>(list.subList(Math.min(index, list.size()), list.size()));
    }

    /**
     * (c) reconfig from a client that is not the super user is refused, as ZooKeeper 3.8 with
     * reconfigEnabled refuses it: NoAuth (-102) for a change it could make, BadArguments (-8)
     * for a new member list of one voter; and the connection stays: the same client then
     * creates and reads, on the same session, on the same member, without a disconnect.
     */
    static void reconfigRefused(CuratorSuite.Ctx ctx) throws Exception {
        allMembersUp(ctx);
        String r = ctx.root();
        CuratorSuite.Tracked t = ctx.tracked(b -> {});
        CuratorFramework c = t.client;
        t.drainEvents();
        int rawMark = t.raw.size(), stateMark = t.states.size();
        long sid = CuratorSuite.sessionId(c);
        InetSocketAddress at = CuratorSuite.remote(c);
        Findings f = new Findings();
        List<String> attempts = List.of("joining server.4", "leaving 3", "withNewMembers");
        for (String what : attempts) {
            ctx.step("reconfig " + what);
            try {
                byte[] answer = switch (what) {
                    case "joining server.4" -> c.reconfig().joining("server.4=127.0.0.1:2888:3888:participant;127.0.0.1:2181").forEnsemble();
                    case "leaving 3" -> c.reconfig().leaving("3").forEnsemble();
                    default -> c.reconfig().withNewMembers("server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181").forEnsemble();
                };
                f.problem("reconfig " + what + " was accepted (" + (answer == null ? 0 : answer.length) + " bytes of config)");
            } catch (KeeperException e) {
                KeeperException.Code want = what.equals("withNewMembers")
                        ? KeeperException.Code.BADARGUMENTS : KeeperException.Code.NOAUTH;
                f.expect(e.code() == want, "reconfig " + what + ": expected " + want + " (" + want.intValue() + "), got "
                        + e.code() + " (" + e.code().intValue() + ")");
            }
        }
        ctx.step("create and getData after the refused reconfigs");
        try {
            c.create().forPath(r + "/after", CuratorSuite.bytes("still here"));
            f.expect("still here".equals(CuratorSuite.str(c.getData().forPath(r + "/after"))), "getData after reconfig: wrong data");
        } catch (Exception e) {
            f.problem("create/getData after reconfig failed: " + CuratorSuite.describe(e));
        }
        t.drainEvents();
        f.expect(CuratorSuite.sessionId(c) == sid, "the session changed: " + CuratorSuite.sid(sid) + " -> " + CuratorSuite.sid(CuratorSuite.sessionId(c)));
        InetSocketAddress now = CuratorSuite.remote(c);
        f.expect(at != null && at.equals(now), "the connection moved from " + at + " to " + now);
        List<KeeperState> raw = after(t.raw.snapshot(), rawMark);
        f.expect(raw.isEmpty(), "the connection was dropped: the ZooKeeper handle saw " + CuratorSuite.brief(raw));
        List<ConnectionState> states = after(t.states.snapshot(), stateMark);
        f.expect(states.isEmpty(), "Curator's connection state changed: " + CuratorSuite.brief(states));
        f.done("session " + CuratorSuite.sid(sid) + " on " + at);
    }

    /**
     * (a) SIGKILL the member the client is connected to, while the client holds an ephemeral, a
     * data watch on a znode of its own and one on /zookeeper/config: the client moves to another
     * member with the same session; SUSPENDED then RECONNECTED, never LOST; the ephemeral
     * survives; the new member holds both watches (wchc) and the data watch fires on the next
     * change; then the connection stays up (no disconnect for 5 s of requests). The member is
     * started again at the end.
     */
    static void failoverKill(CuratorSuite.Ctx ctx) throws Exception {
        allMembersUp(ctx);
        CuratorSuite.Env env = ctx.env;
        String r = ctx.root();
        CuratorFramework admin = ctx.admin();
        CuratorSuite.Tracked t = ctx.tracked(b -> b.sessionTimeoutMs(20000));
        CuratorFramework c = t.client;
        String eph = r + "/eph", watched = r + "/watched";
        CuratorSuite.Events<WatchedEvent> dataEvents = new CuratorSuite.Events<>(), configEvents = new CuratorSuite.Events<>();
        ctx.step("an ephemeral, a data watch, a watch on " + CONFIG);
        c.create().withMode(CreateMode.EPHEMERAL).forPath(eph, CuratorSuite.bytes("mine"));
        c.create().forPath(watched, CuratorSuite.bytes("0"));
        c.getData().usingWatcher((Watcher) dataEvents::add).forPath(watched);
        c.getConfig().usingWatcher((Watcher) configEvents::add).forEnsemble();
        List<String> held = CuratorSuite.clientDataWatches(c);
        CuratorSuite.check(held.contains(watched) && held.contains(CONFIG), "the client's data watches: " + held);
        long sid = CuratorSuite.sessionId(c);
        InetSocketAddress at = CuratorSuite.remote(c);
        CuratorSuite.check(at != null, "the client has no connection");
        int victim = env.memberOfPort(at.getPort());
        ctx.step("member " + victim + " lists the session and its watches");
        String cons = env.fourLetter(victim, "cons");
        CuratorSuite.check(cons.contains("sid=" + CuratorSuite.sid(sid)), "cons on member " + victim + " does not list session " + CuratorSuite.sid(sid));
        List<String> before = env.watchesOf(victim, sid);
        CuratorSuite.check(before.contains(watched) && before.contains(CONFIG), "wchc on member " + victim + " lists " + before);
        ctx.note("session " + CuratorSuite.sid(sid) + " (timeout " + CuratorSuite.zk(c).getSessionTimeout() + " ms) on member " + victim
                + " (" + env.mode(victim) + "), watches " + before + "; SIGKILL member " + victim);
        t.drainEvents();
        int rawMark = t.raw.size(), stateMark = t.states.size();

        Findings f = new Findings();
        boolean killed = false;
        try {
            ctx.step("kill member " + victim);
            env.control("kill", victim, 60);
            killed = true;
            long t0 = System.nanoTime();
            ctx.step("wait for SUSPENDED, then RECONNECTED");
            List<ConnectionState> seen = t.states.waitFor("SUSPENDED then RECONNECTED (or LOST)", 40_000, l -> {
                List<ConnectionState> s = after(l, stateMark);
                int i = s.indexOf(ConnectionState.SUSPENDED);
                return s.contains(ConnectionState.LOST) || (i >= 0 && after(s, i).contains(ConnectionState.RECONNECTED));
            });
            List<ConnectionState> sinceKill = after(seen, stateMark);
            f.expect(!sinceKill.contains(ConnectionState.LOST), "Curator reported LOST: " + CuratorSuite.brief(sinceKill));
            int reconnectedAt = stateMark + sinceKill.indexOf(ConnectionState.RECONNECTED);
            ctx.note("states " + sinceKill + " after " + secs(secondsSince(t0)));

            ctx.step("the first request on the new connection");
            c.checkExists().forPath(watched);
            t.drainEvents();
            long sidNow = CuratorSuite.sessionId(c);
            f.expect(sidNow == sid, "the session changed: " + CuratorSuite.sid(sid) + " -> " + CuratorSuite.sid(sidNow));
            InetSocketAddress atNow = CuratorSuite.remote(c);
            int member = atNow == null ? -1 : env.memberOfPort(atNow.getPort());
            f.expect(member > 0 && member != victim, "the client is on member " + member + " (" + atNow + "), not on another member");
            if (member > 0 && member != victim) {
                ctx.step("wchc on member " + member);
                List<String> w = env.watchesOf(member, sid);
                f.expect(w.contains(watched) && w.contains(CONFIG), "after the move, wchc on member " + member + " lists " + w
                        + " for " + CuratorSuite.sid(sid) + " (expected " + watched + " and " + CONFIG + ")");
            }

            ctx.step("the ephemeral survives");
            CuratorSuite.sync(admin, eph);
            Stat es = admin.checkExists().forPath(eph);
            f.expect(es != null && es.getEphemeralOwner() == sid, "the ephemeral after the move: "
                    + (es == null ? "gone" : "owner " + CuratorSuite.sid(es.getEphemeralOwner())));

            ctx.step("a change fires the re-armed data watch");
            admin.setData().forPath(watched, CuratorSuite.bytes("1"));
            try {
                dataEvents.waitFor("NodeDataChanged of the watched znode", 15_000, l -> l.stream().anyMatch(e ->
                        e.getType() == Watcher.Event.EventType.NodeDataChanged && watched.equals(e.getPath())));
            } catch (AssertionError e) {
                f.problem("the data watch did not fire after the move: " + e.getMessage());
            }

            ctx.step("5 s of requests on the new connection");
            long window = System.nanoTime();
            int requests = 0;
            while (secondsSince(window) < 5.0) {
                try {
                    c.getData().forPath(watched);
                    requests++;
                } catch (Exception e) {
                    f.problem("getData after the reconnect failed: " + CuratorSuite.describe(e));
                    break;
                }
                Thread.sleep(200);
            }
            t.drainEvents();
            List<ConnectionState> later = after(t.states.snapshot(), reconnectedAt + 1);
            List<KeeperState> raw = after(t.raw.snapshot(), rawMark);
            int firstConnected = raw.indexOf(KeeperState.SyncConnected);
            List<KeeperState> rawLater = firstConnected < 0 ? raw : after(raw, firstConnected + 1);
            ctx.note(requests + " requests in 5 s; handle events since the kill " + CuratorSuite.brief(raw) + ", Curator states " + CuratorSuite.brief(after(t.states.snapshot(), stateMark)));
            f.expect(later.isEmpty(), "the connection did not stay up after RECONNECTED: Curator states since " + CuratorSuite.brief(later));
            f.expect(rawLater.isEmpty(), "the ZooKeeper handle lost its connection again after reconnecting: " + CuratorSuite.brief(rawLater));
            f.expect(CuratorSuite.sessionId(c) == sid, "the session changed during the 5 s");
            List<String> fired = new ArrayList<>();
            for (WatchedEvent e : dataEvents.snapshot()) {
                if (e.getType() != Watcher.Event.EventType.None) fired.add(e.getType() + " " + e.getPath());
            }
            f.expect(fired.equals(List.of("NodeDataChanged " + watched)), "the one-shot data watch's events: " + fired);
            List<String> cfg = new ArrayList<>();
            for (WatchedEvent e : configEvents.snapshot()) {
                if (e.getType() != Watcher.Event.EventType.None) cfg.add(e.getType() + " " + e.getPath());
            }
            f.expect(cfg.isEmpty(), "the " + CONFIG + " watch fired though the config did not change: " + cfg);
        } catch (Exception | AssertionError e) {
            f.problem("at '" + ctx.currentStep() + "': " + CuratorSuite.describe(e));
        } finally {
            if (killed) {
                boolean interrupted = Thread.interrupted(); // restart the member even after a timeout
                try {
                    ctx.step("start member " + victim + " again");
                    env.control("start", victim, 90);
                    ctx.step("");
                } catch (Exception | AssertionError e) {
                    f.problem("member " + victim + " did not serve again: " + CuratorSuite.describe(e));
                }
                if (interrupted) Thread.currentThread().interrupt();
            }
        }
        f.done("session " + CuratorSuite.sid(sid) + " was on member " + victim + "; since the kill the ZooKeeper handle saw "
                + CuratorSuite.brief(after(t.raw.snapshot(), rawMark)) + " and Curator " + CuratorSuite.brief(after(t.states.snapshot(), stateMark)));
    }

    /**
     * (b) Every member stopped for longer than the session timeout (4 s, the least both servers
     * allow): Curator reports LOST; once the members serve again the client has a new session
     * and works; the old session's ephemeral is gone.
     */
    static void allMembersDown(CuratorSuite.Ctx ctx) throws Exception {
        allMembersUp(ctx);
        CuratorSuite.Env env = ctx.env;
        String r = ctx.root();
        CuratorSuite.Tracked t = ctx.tracked(b -> b.sessionTimeoutMs(4000).connectionTimeoutMs(4000).retryPolicy(new RetryNTimes(3, 500)));
        CuratorFramework c = t.client;
        int negotiated = CuratorSuite.zk(c).getSessionTimeout();
        long sid = CuratorSuite.sessionId(c);
        String eph = r + "/eph";
        c.create().withMode(CreateMode.EPHEMERAL).forPath(eph);
        t.drainEvents();
        int stateMark = t.states.size();
        List<Integer> members = new ArrayList<>(env.memberPorts.keySet());
        ctx.note("session " + CuratorSuite.sid(sid) + ", negotiated timeout " + negotiated + " ms; stopping members " + members);
        Findings f = new Findings();
        try {
            long t0 = System.nanoTime();
            for (int m : members) {
                ctx.step("stop member " + m);
                env.control("stop", m, 60);
            }
            long allDown = System.nanoTime();
            ctx.note("all members stopped in " + secs(secondsSince(t0)));
            ctx.step("wait for LOST");
            t.states.waitFor("LOST", negotiated + 30_000L, l -> after(l, stateMark).contains(ConnectionState.LOST));
            ctx.note("LOST " + secs(secondsSince(allDown)) + " after the last member stopped; states " + CuratorSuite.brief(after(t.states.snapshot(), stateMark)));
            long downMs = negotiated + 2000L; // down for longer than the session timeout
            long left = downMs - (long) (secondsSince(allDown) * 1000);
            if (left > 0) Thread.sleep(left);
            ctx.step("start all members together");
            long t1 = System.nanoTime();
            env.controlAll("start", members, 90);
            ctx.note("down " + secs((t1 - allDown) / 1e9) + "; members serve again after " + secs(secondsSince(t1)));
            ctx.step("wait for RECONNECTED after LOST");
            t.states.waitFor("RECONNECTED after LOST", 60_000, l -> {
                List<ConnectionState> s = after(l, stateMark);
                int i = s.indexOf(ConnectionState.LOST);
                return i >= 0 && after(s, i).contains(ConnectionState.RECONNECTED);
            });
            long sidNow = CuratorSuite.sessionId(c);
            f.expect(sidNow != sid && sidNow != 0, "no new session: " + CuratorSuite.sid(sid) + " -> " + CuratorSuite.sid(sidNow));
            ctx.step("the client works on its new session");
            c.create().forPath(r + "/after", CuratorSuite.bytes("works"));
            f.expect("works".equals(CuratorSuite.str(c.getData().forPath(r + "/after"))), "getData on the new session: wrong data");
            ctx.step("the old session's ephemeral goes");
            try {
                CuratorSuite.waitUntil("the old session's ephemeral deleted", 30_000, () -> {
                    CuratorSuite.sync(c, eph);
                    return c.checkExists().forPath(eph) == null;
                });
            } catch (AssertionError e) {
                Stat s = c.checkExists().forPath(eph);
                f.problem(e.getMessage() + (s != null ? " (owner " + CuratorSuite.sid(s.getEphemeralOwner()) + ")" : ""));
            }
            ctx.note("new session " + CuratorSuite.sid(sidNow) + "; states " + CuratorSuite.brief(after(t.states.snapshot(), stateMark)));
        } catch (Exception | AssertionError e) {
            f.problem("at '" + ctx.currentStep() + "': " + CuratorSuite.describe(e));
        } finally {
            boolean interrupted = Thread.interrupted(); // start the members even after a timeout
            try {
                ctx.step("start every member");
                allMembersUp(ctx);
                ctx.step("");
            } catch (Exception | AssertionError e) {
                f.problem("the members did not all serve again: " + CuratorSuite.describe(e));
            }
            if (interrupted) Thread.currentThread().interrupt();
        }
        f.done("session " + CuratorSuite.sid(sid) + "; since the stop Curator saw " + CuratorSuite.brief(after(t.states.snapshot(), stateMark)));
    }
}
