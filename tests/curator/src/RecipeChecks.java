import static java.util.concurrent.TimeUnit.MILLISECONDS;
import static java.util.concurrent.TimeUnit.SECONDS;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.barriers.DistributedBarrier;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.curator.framework.recipes.nodes.GroupMember;
import org.apache.curator.framework.recipes.queue.SimpleDistributedQueue;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.SharedCountListener;
import org.apache.curator.framework.recipes.shared.SharedCountReader;
import org.apache.curator.framework.recipes.shared.VersionedValue;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.RetryNTimes;

/**
 * Curator's recipes, each between two (or three) clients of the ensemble. Clients pick their
 * member at random, so the recipes also run across members; where one client reads what
 * another wrote without a watch in between, it syncs first (ZooKeeper is sequentially
 * consistent per client only).
 */
final class RecipeChecks {
    private RecipeChecks() {}

    static void register(List<CuratorSuite.Check> checks) {
        checks.add(new CuratorSuite.Check("leader-latch", 60, RecipeChecks::leaderLatch));
        checks.add(new CuratorSuite.Check("leader-selector", 60, RecipeChecks::leaderSelector));
        checks.add(new CuratorSuite.Check("mutex", 90, RecipeChecks::mutex));
        checks.add(new CuratorSuite.Check("semaphore", 60, RecipeChecks::semaphore));
        checks.add(new CuratorSuite.Check("read-write-lock", 60, RecipeChecks::readWriteLock));
        checks.add(new CuratorSuite.Check("atomic-long", 90, RecipeChecks::atomicLong));
        checks.add(new CuratorSuite.Check("shared-count", 60, RecipeChecks::sharedCount));
        checks.add(new CuratorSuite.Check("barrier", 60, RecipeChecks::barrier));
        checks.add(new CuratorSuite.Check("double-barrier", 60, RecipeChecks::doubleBarrier));
        checks.add(new CuratorSuite.Check("queue", 60, RecipeChecks::queue));
        checks.add(new CuratorSuite.Check("group-member", 60, RecipeChecks::groupMember));
    }

    static final long WAIT_MS = 15_000;

    /** Two LeaderLatch participants: exactly one leads; when it closes the other takes over. */
    static void leaderLatch(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/latch";
        CuratorFramework a = ctx.client(), b = ctx.client();
        LeaderLatch la = ctx.closing(new LeaderLatch(a, path, "a"));
        LeaderLatch lb = ctx.closing(new LeaderLatch(b, path, "b"));
        CuratorSuite.Events<String> events = new CuratorSuite.Events<>();
        for (LeaderLatch l : List.of(la, lb)) {
            l.addListener(new LeaderLatchListener() {
                public void isLeader() {
                    events.add(l.getId() + " leads");
                }

                public void notLeader() {
                    events.add(l.getId() + " not leader");
                }
            });
        }
        ctx.step("both latches start");
        la.start();
        lb.start();
        CuratorSuite.waitUntil("a leader", WAIT_MS, () -> la.hasLeadership() || lb.hasLeadership());
        LeaderLatch leader = la.hasLeadership() ? la : lb;
        LeaderLatch other = leader == la ? lb : la;
        CuratorSuite.check(!other.hasLeadership(), "both latches claim leadership");
        ctx.step("both latches agree on the leader");
        CuratorSuite.waitUntil("both participants, and one leader seen by both", WAIT_MS, () ->
                la.getParticipants().size() == 2 && lb.getParticipants().size() == 2
                        && la.getLeader().getId().equals(leader.getId())
                        && lb.getLeader().getId().equals(leader.getId()));
        CuratorSuite.check(!other.hasLeadership(), "the other latch took leadership while the leader is open");
        ctx.step("the leader closes");
        leader.close();
        CuratorSuite.check(other.await(WAIT_MS, MILLISECONDS), other.getId() + " did not take over after " + leader.getId() + " closed");
        events.waitFor(other.getId() + " leads", WAIT_MS, l -> l.contains(other.getId() + " leads"));
        CuratorSuite.waitUntil("one participant left", WAIT_MS, () ->
                other.getParticipants().size() == 1 && other.getLeader().getId().equals(other.getId()));
    }

    /** Two LeaderSelectors: one at a time in takeLeadership; the second leads once the first gives up. */
    static void leaderSelector(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/selector";
        CuratorFramework a = ctx.client(), b = ctx.client();
        AtomicInteger inside = new AtomicInteger(), maxInside = new AtomicInteger();
        CuratorSuite.Events<String> led = new CuratorSuite.Events<>();
        Map<String, CountDownLatch> release = Map.of("a", new CountDownLatch(1), "b", new CountDownLatch(1));
        List<LeaderSelector> selectors = new ArrayList<>();
        for (String id : List.of("a", "b")) {
            LeaderSelector s = new LeaderSelector(id.equals("a") ? a : b, path, new LeaderSelectorListenerAdapter() {
                @Override
                public void takeLeadership(CuratorFramework client) throws Exception {
                    int n = inside.incrementAndGet();
                    maxInside.accumulateAndGet(n, Math::max);
                    led.add(id);
                    try {
                        release.get(id).await(45, SECONDS);
                    } finally {
                        inside.decrementAndGet();
                    }
                }
            });
            s.setId(id);
            selectors.add(ctx.closing(s));
        }
        ctx.step("both selectors start");
        selectors.forEach(LeaderSelector::start);
        String first = led.waitCount("a leader", 1, WAIT_MS).get(0);
        String second = first.equals("a") ? "b" : "a";
        LeaderSelector firstSel = first.equals("a") ? selectors.get(0) : selectors.get(1);
        LeaderSelector secondSel = first.equals("a") ? selectors.get(1) : selectors.get(0);
        CuratorSuite.check(firstSel.hasLeadership() && !secondSel.hasLeadership(), "hasLeadership: " + first + " should lead alone");
        ctx.step("both selectors see the leader");
        CuratorSuite.waitUntil(first + " as leader from both selectors", WAIT_MS, () ->
                firstSel.getLeader().getId().equals(first) && secondSel.getLeader().getId().equals(first)
                        && secondSel.getParticipants().size() == 2);
        CuratorSuite.checkEquals(List.of(first), led.snapshot(), "leaders while " + first + " leads");
        ctx.step(first + " gives up leadership");
        release.get(first).countDown();
        List<String> all = led.waitCount(second + " leading next", 2, WAIT_MS);
        CuratorSuite.checkEquals(List.of(first, second), all, "leaders in order");
        release.get(second).countDown();
        CuratorSuite.waitUntil("nobody in takeLeadership", WAIT_MS, () -> inside.get() == 0);
        CuratorSuite.checkEquals(1, maxInside.get(), "most selectors in takeLeadership at once");
    }

    /** InterProcessMutex: exclusive across two clients, reentrant, and exclusive under contention. */
    static void mutex(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/mutex";
        CuratorFramework a = ctx.client(), b = ctx.client();
        InterProcessMutex ma = new InterProcessMutex(a, path), mb = new InterProcessMutex(b, path);
        ctx.step("a acquires, twice (reentrant)");
        CuratorSuite.check(ma.acquire(10, SECONDS), "a could not acquire a free lock");
        CuratorSuite.check(ma.acquire(10, SECONDS), "a could not re-acquire the lock it holds (reentrancy)");
        ctx.step("b tries while a holds");
        CuratorSuite.check(!mb.acquire(300, MILLISECONDS), "b acquired the lock a holds");
        ma.release();
        CuratorSuite.check(ma.isAcquiredInThisProcess(), "a released the lock after one of two releases");
        CuratorSuite.check(!mb.acquire(300, MILLISECONDS), "b acquired the lock a still holds once");
        ma.release();
        CuratorSuite.check(!ma.isAcquiredInThisProcess(), "a still holds the lock after two releases");
        ctx.step("b acquires once a released");
        CuratorSuite.check(mb.acquire(10, SECONDS), "b could not acquire the lock a released");
        mb.release();

        ctx.step("two clients contend, 10 rounds each");
        int rounds = 10;
        AtomicInteger holders = new AtomicInteger(), maxHolders = new AtomicInteger();
        AtomicInteger counter = new AtomicInteger(); // read, then written: the lock protects it
        List<Future<Void>> workers = new ArrayList<>();
        for (InterProcessMutex m : List.of(ma, mb)) {
            workers.add(ctx.async(() -> {
                for (int i = 0; i < rounds; i++) {
                    if (!m.acquire(20, SECONDS)) throw new AssertionError("a contended acquire took over 20 s");
                    try {
                        maxHolders.accumulateAndGet(holders.incrementAndGet(), Math::max);
                        int v = counter.get();
                        Thread.sleep(2);
                        counter.set(v + 1);
                    } finally {
                        holders.decrementAndGet();
                        m.release();
                    }
                }
                return null;
            }));
        }
        for (Future<Void> w : workers) w.get(60, SECONDS);
        CuratorSuite.checkEquals(1, maxHolders.get(), "most holders of the lock at once");
        CuratorSuite.checkEquals(2 * rounds, counter.get(), "increments made under the lock");
        CuratorSuite.sync(a, path);
        CuratorSuite.checkEquals(List.of(), a.getChildren().forPath(path), "lock nodes left after every release");
    }

    /** InterProcessSemaphoreV2 with 2 leases: a third lease waits until one is returned. */
    static void semaphore(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/semaphore";
        CuratorFramework a = ctx.client(), b = ctx.client(), c = ctx.client();
        InterProcessSemaphoreV2 sa = new InterProcessSemaphoreV2(a, path, 2);
        InterProcessSemaphoreV2 sb = new InterProcessSemaphoreV2(b, path, 2);
        InterProcessSemaphoreV2 sc = new InterProcessSemaphoreV2(c, path, 2);
        ctx.step("a takes both leases");
        Collection<Lease> aLeases = sa.acquire(2, 10, SECONDS);
        CuratorSuite.check(aLeases != null && aLeases.size() == 2, "a could not take the 2 leases of an idle semaphore");
        ctx.step("b asks for a third lease");
        CuratorSuite.check(sb.acquire(300, MILLISECONDS) == null, "b got a lease beyond the limit of 2");
        Iterator<Lease> it = aLeases.iterator();
        Lease returned = it.next();
        Lease kept = it.next();
        sa.returnLease(returned);
        ctx.step("b takes the returned lease");
        Lease bLease = sb.acquire(10, SECONDS);
        CuratorSuite.check(bLease != null, "b did not get the lease a returned");
        CuratorSuite.check(sc.acquire(300, MILLISECONDS) == null, "c got a lease while a and b hold both");
        CuratorSuite.waitUntil("2 lease holders seen by c", WAIT_MS, () -> sc.getParticipantNodes().size() == 2);
        sb.returnLease(bLease);
        sa.returnLease(kept);
        ctx.step("c takes 2 leases once all are back");
        Collection<Lease> cLeases = sc.acquire(2, 10, SECONDS);
        CuratorSuite.check(cLeases != null && cLeases.size() == 2, "c could not take both leases once they were returned");
        sc.returnAll(cLeases);
    }

    /** InterProcessReadWriteLock: readers share, a writer excludes readers and writers, and may read. */
    static void readWriteLock(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/rwlock";
        CuratorFramework a = ctx.client(), b = ctx.client();
        InterProcessReadWriteLock ra = new InterProcessReadWriteLock(a, path);
        InterProcessReadWriteLock rb = new InterProcessReadWriteLock(b, path);
        ctx.step("two readers");
        CuratorSuite.check(ra.readLock().acquire(10, SECONDS), "a could not read-lock");
        CuratorSuite.check(rb.readLock().acquire(10, SECONDS), "b could not read-lock beside reader a");
        rb.readLock().release();
        ctx.step("a writer while a reads");
        CuratorSuite.check(!rb.writeLock().acquire(300, MILLISECONDS), "b write-locked while a holds the read lock");
        ra.readLock().release();
        CuratorSuite.check(rb.writeLock().acquire(10, SECONDS), "b could not write-lock once the reader left");
        ctx.step("others while b writes");
        CuratorSuite.check(!ra.readLock().acquire(300, MILLISECONDS), "a read-locked while b holds the write lock");
        CuratorSuite.check(!ra.writeLock().acquire(300, MILLISECONDS), "a write-locked while b holds the write lock");
        CuratorSuite.check(rb.readLock().acquire(10, SECONDS), "the writer b could not also read-lock (downgrade)");
        rb.readLock().release();
        rb.writeLock().release();
        ctx.step("a write-locks once b left");
        CuratorSuite.check(ra.writeLock().acquire(10, SECONDS), "a could not write-lock a free lock");
        ra.writeLock().release();
        CuratorSuite.sync(a, path);
        CuratorSuite.checkEquals(List.of(), a.getChildren().forPath(path), "lock nodes left after every release");
    }

    /** DistributedAtomicLong: increment, add, compareAndSet, and concurrent increments from two clients. */
    static void atomicLong(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/counter";
        CuratorFramework a = ctx.client(), b = ctx.client();
        DistributedAtomicLong la = new DistributedAtomicLong(a, path, new RetryNTimes(50, 10));
        DistributedAtomicLong lb = new DistributedAtomicLong(b, path, new RetryNTimes(50, 10));
        ctx.step("increment, add");
        AtomicValue<Long> v = la.increment();
        CuratorSuite.check(v.succeeded(), "a's increment failed");
        CuratorSuite.checkEquals(List.of(0L, 1L), List.of(v.preValue(), v.postValue()), "a's increment (pre, post)");
        v = lb.add(5L);
        CuratorSuite.check(v.succeeded(), "b's add failed");
        CuratorSuite.checkEquals(List.of(1L, 6L), List.of(v.preValue(), v.postValue()), "b's add of 5 (pre, post)");
        ctx.step("compareAndSet");
        CuratorSuite.sync(a, path); // a's compareAndSet compares with what a's member has
        v = la.compareAndSet(6L, 10L);
        CuratorSuite.check(v.succeeded(), "compareAndSet(6, 10) failed on 6 (pre " + v.preValue() + ")");
        v = la.compareAndSet(6L, 11L);
        CuratorSuite.check(!v.succeeded(), "compareAndSet(6, 11) succeeded on 10");
        CuratorSuite.checkEquals(10L, la.get().postValue(), "value after compareAndSet");

        ctx.step("20 increments from each of two clients at once");
        int each = 20;
        List<Future<Void>> workers = new ArrayList<>();
        for (DistributedAtomicLong l : List.of(la, lb)) {
            workers.add(ctx.async(() -> {
                for (int i = 0; i < each; i++) {
                    int attempts = 0;
                    while (!l.increment().succeeded()) {
                        if (++attempts >= 20) throw new AssertionError("an increment failed 20 times in a row");
                    }
                }
                return null;
            }));
        }
        for (Future<Void> w : workers) w.get(60, SECONDS);
        CuratorSuite.sync(b, path);
        CuratorSuite.checkEquals(10L + 2 * each, lb.get().postValue(), "value after the concurrent increments");
    }

    /** SharedCount: a versioned set succeeds once, with a stale version it does not; listeners see changes. */
    static void sharedCount(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/count";
        CuratorFramework a = ctx.client(), b = ctx.client();
        SharedCount ca = ctx.closing(new SharedCount(a, path, 0));
        SharedCount cb = ctx.closing(new SharedCount(b, path, 0));
        CuratorSuite.Events<Integer> seenByA = new CuratorSuite.Events<>(), seenByB = new CuratorSuite.Events<>();
        ca.addListener(listener(seenByA));
        cb.addListener(listener(seenByB));
        ctx.step("both start");
        ca.start();
        cb.start();
        VersionedValue<Integer> v0 = ca.getVersionedValue();
        CuratorSuite.checkEquals(0, v0.getValue(), "the seed value");
        ctx.step("a sets 7 with the version it read");
        CuratorSuite.check(ca.trySetCount(v0, 7), "trySetCount with the current version failed");
        seenByB.waitFor("b's listener seeing 7", WAIT_MS, l -> l.contains(7));
        CuratorSuite.checkEquals(7, cb.getCount(), "b's count");
        CuratorSuite.check(!ca.trySetCount(v0, 8), "trySetCount with a stale version succeeded");
        ctx.step("b sets 9");
        cb.setCount(9);
        seenByA.waitFor("a's listener seeing 9", WAIT_MS, l -> l.contains(9));
        CuratorSuite.checkEquals(9, ca.getCount(), "a's count");
        VersionedValue<Integer> v2 = ca.getVersionedValue();
        CuratorSuite.checkEquals(2, v2.getVersion(), "the count's version after two sets");
        CuratorSuite.check(!seenByA.snapshot().contains(8) && !seenByB.snapshot().contains(8), "the refused value 8 reached a listener");
    }

    static SharedCountListener listener(CuratorSuite.Events<Integer> into) {
        return new SharedCountListener() {
            public void countHasChanged(SharedCountReader reader, int newCount) {
                into.add(newCount);
            }

            public void stateChanged(CuratorFramework client, ConnectionState state) {}
        };
    }

    /** DistributedBarrier: a waiter is held while the barrier is set and let go when it is removed. */
    static void barrier(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/barrier";
        CuratorFramework a = ctx.client(), b = ctx.client();
        DistributedBarrier ba = new DistributedBarrier(a, path), bb = new DistributedBarrier(b, path);
        ctx.step("a sets the barrier");
        ba.setBarrier();
        CuratorSuite.sync(b, path);
        CuratorSuite.check(!bb.waitOnBarrier(300, MILLISECONDS), "b passed a barrier that is set");
        ctx.step("b waits, a removes the barrier");
        Future<Boolean> waiter = ctx.async(() -> bb.waitOnBarrier(30, SECONDS));
        ba.removeBarrier();
        CuratorSuite.check(waiter.get(35, SECONDS), "b was not let through after the barrier was removed");
        CuratorSuite.check(bb.waitOnBarrier(1, SECONDS), "b is held by a removed barrier");
    }

    /** DistributedDoubleBarrier of 2: nobody enters alone, nobody leaves alone. */
    static void doubleBarrier(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/double";
        CuratorFramework a = ctx.client(), b = ctx.client();
        DistributedDoubleBarrier da = new DistributedDoubleBarrier(a, path, 2);
        DistributedDoubleBarrier db = new DistributedDoubleBarrier(b, path, 2);
        ctx.step("a enters alone");
        Future<Boolean> aEnter = ctx.async(() -> da.enter(40, SECONDS));
        CuratorSuite.waitUntil("a's node in the barrier", WAIT_MS, () -> members(a, path).size() == 1);
        CuratorSuite.check(!aEnter.isDone(), "a entered a barrier of 2 alone (" + result(aEnter) + ")");
        ctx.step("b enters");
        Future<Boolean> bEnter = ctx.async(() -> db.enter(40, SECONDS));
        CuratorSuite.check(aEnter.get(45, SECONDS), "a's enter returned false");
        CuratorSuite.check(bEnter.get(45, SECONDS), "b's enter returned false");
        ctx.step("a leaves alone");
        Future<Boolean> aLeave = ctx.async(() -> da.leave(40, SECONDS));
        // b's node stays until b leaves: a's leave must not return meanwhile (watched for 1 s).
        for (long end = System.nanoTime() + SECONDS.toNanos(1); System.nanoTime() < end; ) {
            CuratorSuite.check(!aLeave.isDone(), "a left a barrier of 2 while b is in it (" + result(aLeave) + ")");
            Thread.sleep(50);
        }
        ctx.step("b leaves");
        Future<Boolean> bLeave = ctx.async(() -> db.leave(40, SECONDS));
        CuratorSuite.check(aLeave.get(45, SECONDS), "a's leave returned false");
        CuratorSuite.check(bLeave.get(45, SECONDS), "b's leave returned false");
        CuratorSuite.sync(a, path);
        CuratorSuite.checkEquals(List.of(), members(a, path), "members left in the barrier");
    }

    static List<String> members(CuratorFramework c, String path) throws Exception {
        if (c.checkExists().forPath(path) == null) return List.of();
        List<String> out = new ArrayList<>(c.getChildren().forPath(path));
        out.remove("ready");
        return out;
    }

    static String result(Future<?> f) {
        try {
            return "returned " + f.get(0, SECONDS);
        } catch (Exception e) {
            return "threw " + CuratorSuite.describe(e);
        }
    }

    /** SimpleDistributedQueue: FIFO across two clients, poll waits for an offer, empty polls null. */
    static void queue(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/queue";
        CuratorFramework a = ctx.client(), b = ctx.client();
        SimpleDistributedQueue qa = new SimpleDistributedQueue(a, path), qb = new SimpleDistributedQueue(b, path);
        ctx.step("a offers 1, 2, 3; b takes them");
        for (String s : List.of("1", "2", "3")) CuratorSuite.check(qa.offer(CuratorSuite.bytes(s)), "offer " + s);
        List<String> taken = new ArrayList<>();
        for (int i = 0; i < 3; i++) taken.add(CuratorSuite.str(qb.poll(10, SECONDS)));
        CuratorSuite.checkEquals(List.of("1", "2", "3"), taken, "what b took, in order");
        CuratorSuite.check(qb.poll() == null, "poll of an empty queue returned an item");
        CuratorSuite.check(qb.poll(300, MILLISECONDS) == null, "a timed poll of an empty queue returned an item");
        ctx.step("b waits in poll, a offers 4");
        Future<byte[]> waiting = ctx.async(() -> qb.poll(30, SECONDS));
        qa.offer(CuratorSuite.bytes("4"));
        CuratorSuite.checkEquals("4", CuratorSuite.str(waiting.get(35, SECONDS)), "what the waiting poll got");
        CuratorSuite.sync(a, path);
        CuratorSuite.check(qa.peek() == null, "the queue is not empty after every item was taken");
    }

    /** GroupMember: both members see both; a closed member disappears from the other's view. */
    static void groupMember(CuratorSuite.Ctx ctx) throws Exception {
        String path = ctx.root() + "/group";
        CuratorFramework a = ctx.client(), b = ctx.client();
        GroupMember ga = ctx.closing(new GroupMember(a, path, "a", CuratorSuite.bytes("data-a")));
        GroupMember gb = ctx.closing(new GroupMember(b, path, "b", CuratorSuite.bytes("data-b")));
        ctx.step("both join");
        ga.start();
        gb.start();
        CuratorSuite.waitUntil("both members in both views", WAIT_MS, () ->
                ga.getCurrentMembers().keySet().equals(Set.of("a", "b"))
                        && gb.getCurrentMembers().keySet().equals(Set.of("a", "b")));
        CuratorSuite.checkEquals("data-b", CuratorSuite.str(ga.getCurrentMembers().get("b")), "b's data as a sees it");
        CuratorSuite.checkEquals("data-a", CuratorSuite.str(gb.getCurrentMembers().get("a")), "a's data as b sees it");
        ctx.step("b closes");
        gb.close();
        CuratorSuite.waitUntil("b gone from a's view", WAIT_MS, () -> ga.getCurrentMembers().keySet().equals(Set.of("a")));
    }
}
