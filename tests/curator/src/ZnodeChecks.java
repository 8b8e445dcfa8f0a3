import java.util.ArrayList;
import java.util.List;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.api.transaction.CuratorOp;
import org.apache.curator.framework.api.transaction.CuratorTransactionResult;
import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;
import org.apache.zookeeper.server.auth.DigestAuthenticationProvider;

/** Watches, transactions, containers, TTL znodes and ACLs through Curator's API. */
final class ZnodeChecks {
    private ZnodeChecks() {}

    static void register(List<CuratorSuite.Check> checks) {
        checks.add(new CuratorSuite.Check("watch-one-shot", 60, ZnodeChecks::oneShotWatches));
        checks.add(new CuratorSuite.Check("watch-persistent", 60, ZnodeChecks::persistentWatches));
        checks.add(new CuratorSuite.Check("transaction", 60, ZnodeChecks::transaction));
        checks.add(new CuratorSuite.Check("container", 90, ZnodeChecks::container));
        checks.add(new CuratorSuite.Check("ttl", 90, ZnodeChecks::ttl));
        checks.add(new CuratorSuite.Check("acl", 60, ZnodeChecks::acl));
    }

    static final long WAIT_MS = 15_000;
    /** How long a server may take to reap an expired TTL znode or an empty container (1 s checks). */
    static final long REAP_MS = 30_000;

    static String ev(WatchedEvent e) {
        return e.getType() + " " + e.getPath();
    }

    /** Node events only (a watcher may also get session events, type None). */
    static List<String> nodeEvents(CuratorSuite.Events<WatchedEvent> events) {
        List<String> out = new ArrayList<>();
        for (WatchedEvent e : events.snapshot()) {
            if (e.getType() != Watcher.Event.EventType.None) out.add(ev(e));
        }
        return out;
    }

    static void waitEvent(CuratorSuite.Events<WatchedEvent> events, String expected) throws InterruptedException {
        events.waitFor(expected, WAIT_MS, l -> l.stream().anyMatch(e -> ev(e).equals(expected)));
    }

    /**
     * One-shot watches: a data watch fires once (the next change does not fire it again), an
     * exists watch fires NodeCreated, a child watch NodeChildrenChanged.
     */
    static void oneShotWatches(CuratorSuite.Ctx ctx) throws Exception {
        String p = ctx.root() + "/w";
        CuratorFramework a = ctx.client(), b = ctx.client();
        b.create().forPath(p, CuratorSuite.bytes("0"));
        CuratorSuite.sync(a, p);
        CuratorSuite.Events<WatchedEvent> first = new CuratorSuite.Events<>(), second = new CuratorSuite.Events<>();
        ctx.step("a watches p's data; b sets it");
        CuratorSuite.checkEquals("0", CuratorSuite.str(a.getData().usingWatcher((Watcher) first::add).forPath(p)), "p's data");
        b.setData().forPath(p, CuratorSuite.bytes("1"));
        waitEvent(first, "NodeDataChanged " + p);
        ctx.step("b sets p again; a's second watch fires on a third set");
        b.setData().forPath(p, CuratorSuite.bytes("2"));
        CuratorSuite.sync(a, p);
        CuratorSuite.checkEquals("2", CuratorSuite.str(a.getData().usingWatcher((Watcher) second::add).forPath(p)), "p's data after the sync");
        b.setData().forPath(p, CuratorSuite.bytes("3"));
        waitEvent(second, "NodeDataChanged " + p);
        // A session's notifications arrive in the order of the changes: had the first watch
        // fired again (for "2"), that event would be in before the second watch's (for "3").
        CuratorSuite.checkEquals(List.of("NodeDataChanged " + p), nodeEvents(first), "the first watch's events");
        CuratorSuite.checkEquals(List.of("NodeDataChanged " + p), nodeEvents(second), "the second watch's events");

        ctx.step("an exists watch on a missing znode");
        CuratorSuite.Events<WatchedEvent> exists = new CuratorSuite.Events<>(), children = new CuratorSuite.Events<>();
        CuratorSuite.check(a.checkExists().usingWatcher((Watcher) exists::add).forPath(p + "/c") == null, "p/c exists already");
        b.create().forPath(p + "/c");
        waitEvent(exists, "NodeCreated " + p + "/c");
        ctx.step("a child watch");
        a.getChildren().usingWatcher((Watcher) children::add).forPath(p);
        b.create().forPath(p + "/d");
        waitEvent(children, "NodeChildrenChanged " + p);
        ctx.step("a data watch on a deleted znode");
        CuratorSuite.Events<WatchedEvent> deleted = new CuratorSuite.Events<>();
        CuratorSuite.sync(a, p);
        a.getData().usingWatcher((Watcher) deleted::add).forPath(p + "/d");
        b.delete().forPath(p + "/d");
        waitEvent(deleted, "NodeDeleted " + p + "/d");
    }

    /**
     * watchers().add(): a PERSISTENT_RECURSIVE watch sees creations, changes and deletions in the
     * whole subtree, again and again; a PERSISTENT watch fires for the node itself and its children.
     */
    static void persistentWatches(CuratorSuite.Ctx ctx) throws Exception {
        String t = ctx.root() + "/tree";
        // The persistent watch is another session's: the Java client hands a notification to
        // every watcher of this session that matches it, so a recursive watcher of the same
        // session would also get the NodeChildrenChanged that the persistent watch brings in.
        CuratorFramework a = ctx.client(), b = ctx.client(), a2 = ctx.client();
        b.create().forPath(t);
        CuratorSuite.sync(a, t);
        CuratorSuite.Events<WatchedEvent> rec = new CuratorSuite.Events<>(), per = new CuratorSuite.Events<>();
        ctx.step("a adds a recursive watch on t");
        a.watchers().add().withMode(AddWatchMode.PERSISTENT_RECURSIVE).usingWatcher((Watcher) rec::add).forPath(t);
        String x = t + "/x", y = x + "/y";
        List<String> expected = new ArrayList<>();
        for (String[] step : new String[][] {
                {"create", x, "NodeCreated"}, {"create", y, "NodeCreated"}, {"set", y, "NodeDataChanged"},
                {"set", y, "NodeDataChanged"}, {"set", x, "NodeDataChanged"}, {"delete", y, "NodeDeleted"}}) {
            ctx.step("b: " + step[0] + " " + step[1]);
            switch (step[0]) {
                case "create" -> b.create().forPath(step[1]);
                case "set" -> b.setData().forPath(step[1], CuratorSuite.bytes("v" + expected.size()));
                default -> b.delete().forPath(step[1]);
            }
            expected.add(step[2] + " " + step[1]);
            int n = expected.size();
            rec.waitFor(step[2] + " " + step[1], WAIT_MS, l -> l.stream().filter(e -> e.getType() != Watcher.Event.EventType.None).count() >= n);
        }
        CuratorSuite.checkEquals(expected, nodeEvents(rec), "the recursive watch's events");

        ctx.step("another client adds a persistent watch on x");
        CuratorSuite.sync(a2, x);
        a2.watchers().add().withMode(AddWatchMode.PERSISTENT).usingWatcher((Watcher) per::add).forPath(x);
        b.setData().forPath(x, CuratorSuite.bytes("p1"));
        waitEvent(per, "NodeDataChanged " + x);
        b.setData().forPath(x, CuratorSuite.bytes("p2"));
        per.waitFor("a second NodeDataChanged", WAIT_MS, l -> nodeEventsOf(l) >= 2);
        b.create().forPath(x + "/z");
        per.waitFor("NodeChildrenChanged of x", WAIT_MS, l -> nodeEventsOf(l) >= 3);
        CuratorSuite.checkEquals(List.of("NodeDataChanged " + x, "NodeDataChanged " + x, "NodeChildrenChanged " + x),
                nodeEvents(per), "the persistent watch's events");
        // The recursive watch saw these too (and no NodeChildrenChanged: recursive watches do not).
        rec.waitFor("the recursive watch's NodeCreated of x/z", WAIT_MS, l -> l.stream().anyMatch(e -> ev(e).equals("NodeCreated " + x + "/z")));
        expected.addAll(List.of("NodeDataChanged " + x, "NodeDataChanged " + x, "NodeCreated " + x + "/z"));
        CuratorSuite.checkEquals(expected, nodeEvents(rec), "the recursive watch's events");
    }

    static long nodeEventsOf(List<WatchedEvent> l) {
        return l.stream().filter(e -> e.getType() != Watcher.Event.EventType.None).count();
    }

    /** transaction().forOperations(): all of it, or (a check or a create failing) none of it. */
    static void transaction(CuratorSuite.Ctx ctx) throws Exception {
        String r = ctx.root();
        CuratorFramework a = ctx.client();
        a.create().forPath(r + "/existing", CuratorSuite.bytes("e0"));
        int cversion = a.checkExists().forPath(r).getCversion();
        ctx.step("a transaction that succeeds");
        List<CuratorTransactionResult> ok = a.transaction().forOperations(
                a.transactionOp().create().forPath(r + "/t1", CuratorSuite.bytes("1")),
                a.transactionOp().setData().forPath(r + "/existing", CuratorSuite.bytes("e1")),
                a.transactionOp().check().withVersion(1).forPath(r + "/existing"),
                a.transactionOp().create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath(r + "/s-"));
        List<String> kinds = new ArrayList<>();
        for (CuratorTransactionResult res : ok) kinds.add(res.getType() + " " + res.getForPath() + " " + res.getError());
        CuratorSuite.checkEquals(List.of("CREATE " + r + "/t1 0", "SET_DATA " + r + "/existing 0",
                "CHECK " + r + "/existing 0", "CREATE " + r + "/s- 0"), kinds, "the results");
        // The sequence number is the parent's cversion, which the create of t1 before it raised.
        CuratorSuite.checkEquals(r + "/s-" + String.format("%010d", cversion + 1), ok.get(3).getResultPath(),
                "the sequential znode's path");
        CuratorSuite.checkEquals(1, ok.get(1).getResultStat().getVersion(), "the version setData returned");
        CuratorSuite.checkEquals("1", CuratorSuite.str(a.getData().forPath(r + "/t1")), "t1's data");

        ctx.step("a transaction whose check fails");
        List<CuratorOp> failing = List.of(
                a.transactionOp().create().forPath(r + "/t2", CuratorSuite.bytes("2")),
                a.transactionOp().setData().forPath(r + "/existing", CuratorSuite.bytes("e2")),
                a.transactionOp().check().withVersion(0).forPath(r + "/existing"), // it is 1
                a.transactionOp().delete().forPath(r + "/t1"));
        KeeperException e = CuratorSuite.expectKeeper(KeeperException.Code.BADVERSION, "a multi with a stale check",
                () -> a.transaction().forOperations(failing));
        CuratorSuite.checkEquals(List.of(0, 0, KeeperException.Code.BADVERSION.intValue(),
                KeeperException.Code.RUNTIMEINCONSISTENCY.intValue()), errors(e.getResults()), "the per-operation results");
        CuratorSuite.check(a.checkExists().forPath(r + "/t2") == null, "t2 was created by a failed transaction");
        CuratorSuite.checkEquals("e1", CuratorSuite.str(a.getData().forPath(r + "/existing")), "existing's data after a failed transaction");
        CuratorSuite.check(a.checkExists().forPath(r + "/t1") != null, "t1 was deleted by a failed transaction");

        ctx.step("a transaction whose create fails");
        KeeperException e2 = CuratorSuite.expectKeeper(KeeperException.Code.NODEEXISTS, "a multi creating an existing znode",
                () -> a.transaction().forOperations(
                        a.transactionOp().delete().forPath(r + "/t1"),
                        a.transactionOp().create().forPath(r + "/existing")));
        CuratorSuite.checkEquals(List.of(0, KeeperException.Code.NODEEXISTS.intValue()), errors(e2.getResults()), "the per-operation results");
        CuratorSuite.check(a.checkExists().forPath(r + "/t1") != null, "t1 was deleted by a failed transaction");
        Stat st = a.checkExists().forPath(r + "/existing");
        CuratorSuite.checkEquals(1, st.getVersion(), "existing's version after the failed transactions");
    }

    static List<Integer> errors(List<OpResult> results) {
        List<Integer> out = new ArrayList<>();
        if (results == null) return out;
        for (OpResult o : results) out.add(o instanceof OpResult.ErrorResult er ? er.getErr() : 0);
        return out;
    }

    /**
     * creatingParentContainersIfNeeded makes container parents; once the leaf is deleted the
     * emptied containers are reaped (one after the other); a container never used is kept.
     */
    static void container(CuratorSuite.Ctx ctx) throws Exception {
        String r = ctx.root();
        String c1 = r + "/c1", c2 = c1 + "/c2", leaf = c2 + "/leaf", fresh = r + "/fresh";
        CuratorFramework a = ctx.client();
        ctx.step("create a leaf with container parents");
        a.create().creatingParentContainersIfNeeded().forPath(leaf, CuratorSuite.bytes("x"));
        a.create().withMode(CreateMode.CONTAINER).forPath(fresh);
        CuratorSuite.check(a.checkExists().forPath(c2) != null && a.checkExists().forPath(c1) != null, "the parents were not created");
        ctx.step("delete the leaf: the emptied containers are reaped");
        a.delete().forPath(leaf);
        CuratorSuite.waitUntil("c2 (emptied container) reaped", REAP_MS, () -> a.checkExists().forPath(c2) == null);
        CuratorSuite.waitUntil("c1 (container emptied by the reaper) reaped", REAP_MS, () -> a.checkExists().forPath(c1) == null);
        // Each reaper round goes over every candidate: a fresh container would have gone by now.
        CuratorSuite.check(a.checkExists().forPath(fresh) != null, "a container that never had a child was reaped");
        CuratorSuite.check(a.checkExists().forPath(r) != null, "the persistent root was reaped");
    }

    /**
     * PERSISTENT_WITH_TTL: reaped once the TTL has passed without a change; one with a child is
     * kept until the child is gone; PERSISTENT_SEQUENTIAL_WITH_TTL likewise reaped.
     */
    static void ttl(CuratorSuite.Ctx ctx) throws Exception {
        String r = ctx.root();
        CuratorFramework a = ctx.client();
        ctx.step("create TTL znodes");
        a.create().withTtl(1000).withMode(CreateMode.PERSISTENT_WITH_TTL).forPath(r + "/ttl", CuratorSuite.bytes("t"));
        String seq = a.create().withTtl(1000).withMode(CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL).forPath(r + "/seq-");
        CuratorSuite.check(seq.startsWith(r + "/seq-") && seq.length() == (r + "/seq-").length() + 10, "the sequential TTL znode's name: " + seq);
        a.create().withTtl(1000).withMode(CreateMode.PERSISTENT_WITH_TTL).forPath(r + "/parent");
        a.create().forPath(r + "/parent/child");
        CuratorSuite.checkEquals("t", CuratorSuite.str(a.getData().forPath(r + "/ttl")), "the TTL znode's data");
        ctx.step("wait for the reaper");
        CuratorSuite.waitUntil("the TTL znode reaped", REAP_MS, () -> a.checkExists().forPath(r + "/ttl") == null);
        CuratorSuite.waitUntil("the sequential TTL znode reaped", REAP_MS, () -> a.checkExists().forPath(seq) == null);
        CuratorSuite.check(a.checkExists().forPath(r + "/parent") != null, "a TTL znode with a child was reaped");
        ctx.step("delete the TTL parent's child");
        a.delete().forPath(r + "/parent/child");
        CuratorSuite.waitUntil("the emptied TTL znode reaped", REAP_MS, () -> a.checkExists().forPath(r + "/parent") == null);
    }

    /** A digest ACL: no auth or a wrong password gets NoAuth, the right digest gets through. */
    static void acl(CuratorSuite.Ctx ctx) throws Exception {
        String p = ctx.root() + "/secret";
        CuratorFramework owner = ctx.client(b -> b.authorization("digest", CuratorSuite.bytes("alice:s3cret")));
        CuratorFramework anon = ctx.client();
        CuratorFramework wrong = ctx.client(b -> b.authorization("digest", CuratorSuite.bytes("alice:wrong")));
        Id alice = new Id("digest", DigestAuthenticationProvider.generateDigest("alice:s3cret"));
        List<ACL> acl = List.of(new ACL(ZooDefs.Perms.ALL, alice));
        ctx.step("the owner creates a znode only alice may use");
        owner.create().withACL(acl).forPath(p, CuratorSuite.bytes("hidden"));
        CuratorSuite.checkEquals(acl, owner.getACL().forPath(p), "the znode's ACL");
        ctx.step("a client without auth");
        CuratorSuite.sync(anon, p);
        CuratorSuite.expectKeeper(KeeperException.Code.NOAUTH, "getData without auth", () -> anon.getData().forPath(p));
        CuratorSuite.expectKeeper(KeeperException.Code.NOAUTH, "setData without auth", () -> anon.setData().forPath(p, CuratorSuite.bytes("x")));
        CuratorSuite.expectKeeper(KeeperException.Code.NOAUTH, "create under it without auth", () -> anon.create().forPath(p + "/c"));
        CuratorSuite.expectKeeper(KeeperException.Code.NOAUTH, "getChildren without auth", () -> anon.getChildren().forPath(p));
        ctx.step("a client with the wrong password");
        CuratorSuite.sync(wrong, p);
        CuratorSuite.expectKeeper(KeeperException.Code.NOAUTH, "getData with a wrong password", () -> wrong.getData().forPath(p));
        ctx.step("the owner reads and writes");
        CuratorSuite.checkEquals("hidden", CuratorSuite.str(owner.getData().forPath(p)), "the owner's read");
        owner.setData().forPath(p, CuratorSuite.bytes("changed"));
        owner.create().forPath(p + "/child");
        ctx.step("the client without auth adds alice's");
        CuratorSuite.zk(anon).addAuthInfo("digest", CuratorSuite.bytes("alice:s3cret"));
        CuratorSuite.sync(anon, p);
        CuratorSuite.checkEquals("changed", CuratorSuite.str(anon.getData().forPath(p)), "the read after addAuth");
        CuratorSuite.checkEquals(List.of("child"), anon.getChildren().forPath(p), "the children after addAuth");
    }
}
