import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.recipes.cache.ChildData;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.cache.NodeCache;
import org.apache.curator.framework.recipes.cache.PathChildrenCache;
import org.apache.curator.framework.recipes.cache.PathChildrenCacheEvent;
import org.apache.curator.framework.recipes.cache.TreeCache;
import org.apache.curator.framework.recipes.cache.TreeCacheEvent;

/**
 * Curator's caches on one client while another client changes the tree. Each change waits for
 * the cache's event before the next one, so every event is determined (a cache may otherwise
 * fold a create and a quick update into one).
 */
final class CacheChecks {
    private CacheChecks() {}

    static void register(List<CuratorSuite.Check> checks) {
        checks.add(new CuratorSuite.Check("curator-cache", 60, CacheChecks::curatorCache));
        checks.add(new CuratorSuite.Check("tree-cache", 60, CacheChecks::treeCache));
        checks.add(new CuratorSuite.Check("node-cache", 60, CacheChecks::nodeCache));
        checks.add(new CuratorSuite.Check("path-children-cache", 60, CacheChecks::pathChildrenCache));
    }

    static final long WAIT_MS = 15_000;

    static String ev(Object type, ChildData d) {
        return type + " " + (d == null ? "-" : d.getPath() + "=" + CuratorSuite.str(d.getData()));
    }

    static CountDownLatch await(CountDownLatch l, String what) throws InterruptedException {
        if (!l.await(WAIT_MS, TimeUnit.MILLISECONDS)) throw new AssertionError("timed out waiting for " + what);
        return l;
    }

    /** CuratorCache (recursive): created, changed, a grandchild created, both deleted. */
    static void curatorCache(CuratorSuite.Ctx ctx) throws Exception {
        String base = ctx.root() + "/cc";
        CuratorFramework a = ctx.client(), b = ctx.client();
        a.create().forPath(base, CuratorSuite.bytes("base"));
        CuratorSuite.Events<String> events = new CuratorSuite.Events<>();
        CountDownLatch initialized = new CountDownLatch(1);
        CuratorCache cache = ctx.closing(CuratorCache.build(a, base));
        cache.listenable().addListener(CuratorCacheListener.builder()
                .forAll((type, old, data) -> {
                    if (initialized.getCount() == 0) events.add(type + " " + (type == CuratorCacheListener.Type.NODE_DELETED ? old.getPath() : ev("", data).trim()));
                })
                .forInitialized(initialized::countDown)
                .build());
        ctx.step("the cache starts");
        cache.start();
        await(initialized, "the cache's initialized()");
        CuratorSuite.checkEquals("base", CuratorSuite.str(cache.get(base).map(ChildData::getData).orElse(null)), "the cached root");
        CuratorSuite.sync(b, base);
        String x = base + "/x", y = x + "/y";
        ctx.step("b creates x");
        b.create().forPath(x, CuratorSuite.bytes("1"));
        events.waitFor("NODE_CREATED of x", WAIT_MS, l -> l.contains("NODE_CREATED " + x + "=1"));
        ctx.step("b sets x");
        b.setData().forPath(x, CuratorSuite.bytes("2"));
        events.waitFor("NODE_CHANGED of x", WAIT_MS, l -> l.contains("NODE_CHANGED " + x + "=2"));
        ctx.step("b creates x/y");
        b.create().forPath(y, CuratorSuite.bytes("3"));
        events.waitFor("NODE_CREATED of x/y", WAIT_MS, l -> l.contains("NODE_CREATED " + y + "=3"));
        ctx.step("b deletes x/y, then x");
        b.delete().forPath(y);
        events.waitFor("NODE_DELETED of x/y", WAIT_MS, l -> l.contains("NODE_DELETED " + y));
        b.delete().forPath(x);
        List<String> all = events.waitFor("NODE_DELETED of x", WAIT_MS, l -> l.contains("NODE_DELETED " + x));
        CuratorSuite.checkEquals(List.of("NODE_CREATED " + x + "=1", "NODE_CHANGED " + x + "=2", "NODE_CREATED " + y + "=3",
                "NODE_DELETED " + y, "NODE_DELETED " + x), all, "the cache's events");
        CuratorSuite.check(cache.get(x).isEmpty() && cache.get(y).isEmpty(), "deleted znodes still in the cache");
        CuratorSuite.checkEquals(1, cache.size(), "znodes in the cache");
    }

    /** TreeCache: added, updated, a grandchild added, both removed. */
    @SuppressWarnings("deprecation")
    static void treeCache(CuratorSuite.Ctx ctx) throws Exception {
        String base = ctx.root() + "/tc";
        CuratorFramework a = ctx.client(), b = ctx.client();
        a.create().forPath(base, CuratorSuite.bytes("base"));
        CuratorSuite.Events<String> events = new CuratorSuite.Events<>();
        CountDownLatch initialized = new CountDownLatch(1);
        TreeCache cache = ctx.closing(TreeCache.newBuilder(a, base).setCacheData(true).build());
        cache.getListenable().addListener((client, event) -> {
            if (event.getType() == TreeCacheEvent.Type.INITIALIZED) {
                initialized.countDown();
            } else if (initialized.getCount() == 0) {
                events.add(event.getType() == TreeCacheEvent.Type.NODE_REMOVED
                        ? event.getType() + " " + event.getData().getPath()
                        : ev(event.getType(), event.getData()));
            }
        });
        ctx.step("the cache starts");
        cache.start();
        await(initialized, "the cache's INITIALIZED");
        CuratorSuite.sync(b, base);
        String x = base + "/x", y = x + "/y";
        ctx.step("b creates x");
        b.create().forPath(x, CuratorSuite.bytes("1"));
        events.waitFor("NODE_ADDED of x", WAIT_MS, l -> l.contains("NODE_ADDED " + x + "=1"));
        ctx.step("b sets x");
        b.setData().forPath(x, CuratorSuite.bytes("2"));
        events.waitFor("NODE_UPDATED of x", WAIT_MS, l -> l.contains("NODE_UPDATED " + x + "=2"));
        ctx.step("b creates x/y");
        b.create().forPath(y, CuratorSuite.bytes("3"));
        events.waitFor("NODE_ADDED of x/y", WAIT_MS, l -> l.contains("NODE_ADDED " + y + "=3"));
        CuratorSuite.checkEquals(List.of("y"), List.copyOf(cache.getCurrentChildren(x).keySet()), "x's children in the cache");
        ctx.step("b deletes x/y, then x");
        b.delete().forPath(y);
        events.waitFor("NODE_REMOVED of x/y", WAIT_MS, l -> l.contains("NODE_REMOVED " + y));
        b.delete().forPath(x);
        List<String> all = events.waitFor("NODE_REMOVED of x", WAIT_MS, l -> l.contains("NODE_REMOVED " + x));
        CuratorSuite.checkEquals(List.of("NODE_ADDED " + x + "=1", "NODE_UPDATED " + x + "=2", "NODE_ADDED " + y + "=3",
                "NODE_REMOVED " + y, "NODE_REMOVED " + x), all, "the cache's events");
        CuratorSuite.check(cache.getCurrentData(x) == null, "x still in the cache after its deletion");
    }

    /** NodeCache of a znode that does not exist yet: created, updated, deleted. */
    @SuppressWarnings("deprecation")
    static void nodeCache(CuratorSuite.Ctx ctx) throws Exception {
        String n = ctx.root() + "/n";
        CuratorFramework a = ctx.client(), b = ctx.client();
        CuratorSuite.Events<String> events = new CuratorSuite.Events<>();
        NodeCache cache = ctx.closing(new NodeCache(a, n));
        cache.getListenable().addListener(() -> {
            ChildData d = cache.getCurrentData();
            events.add(d == null ? "none" : CuratorSuite.str(d.getData()) + " v" + d.getStat().getVersion());
        });
        ctx.step("the cache starts (with its initial read)");
        cache.start(true);
        CuratorSuite.check(cache.getCurrentData() == null, "a znode that does not exist is in the cache");
        CuratorSuite.sync(b, ctx.root());
        ctx.step("b creates the znode");
        b.create().forPath(n, CuratorSuite.bytes("1"));
        events.waitFor("the created znode", WAIT_MS, l -> l.contains("1 v0"));
        ctx.step("b sets it");
        b.setData().forPath(n, CuratorSuite.bytes("2"));
        events.waitFor("the update", WAIT_MS, l -> l.contains("2 v1"));
        ctx.step("b deletes it");
        b.delete().forPath(n);
        List<String> all = events.waitFor("the deletion", WAIT_MS, l -> l.contains("none"));
        CuratorSuite.checkEquals(List.of("1 v0", "2 v1", "none"), all, "what the listener saw");
    }

    /** PathChildrenCache: CHILD_ADDED, CHILD_UPDATED, CHILD_REMOVED. */
    @SuppressWarnings("deprecation")
    static void pathChildrenCache(CuratorSuite.Ctx ctx) throws Exception {
        String base = ctx.root() + "/pc";
        CuratorFramework a = ctx.client(), b = ctx.client();
        a.create().forPath(base);
        a.create().forPath(base + "/old", CuratorSuite.bytes("0"));
        CuratorSuite.Events<String> events = new CuratorSuite.Events<>();
        CountDownLatch initialized = new CountDownLatch(1);
        PathChildrenCache cache = ctx.closing(new PathChildrenCache(a, base, true));
        cache.getListenable().addListener((client, event) -> {
            if (event.getType() == PathChildrenCacheEvent.Type.INITIALIZED) {
                initialized.countDown();
            } else if (initialized.getCount() == 0) {
                events.add(event.getType() == PathChildrenCacheEvent.Type.CHILD_REMOVED
                        ? event.getType() + " " + event.getData().getPath()
                        : ev(event.getType(), event.getData()));
            }
        });
        ctx.step("the cache starts");
        cache.start(PathChildrenCache.StartMode.POST_INITIALIZED_EVENT);
        await(initialized, "the cache's INITIALIZED");
        CuratorSuite.checkEquals(1, cache.getCurrentData().size(), "children in the initial cache");
        CuratorSuite.sync(b, base);
        String x = base + "/x";
        ctx.step("b creates x");
        b.create().forPath(x, CuratorSuite.bytes("1"));
        events.waitFor("CHILD_ADDED of x", WAIT_MS, l -> l.contains("CHILD_ADDED " + x + "=1"));
        ctx.step("b sets x");
        b.setData().forPath(x, CuratorSuite.bytes("2"));
        events.waitFor("CHILD_UPDATED of x", WAIT_MS, l -> l.contains("CHILD_UPDATED " + x + "=2"));
        ctx.step("b deletes x and old");
        b.delete().forPath(x);
        events.waitFor("CHILD_REMOVED of x", WAIT_MS, l -> l.contains("CHILD_REMOVED " + x));
        b.delete().forPath(base + "/old");
        List<String> all = events.waitFor("CHILD_REMOVED of old", WAIT_MS, l -> l.contains("CHILD_REMOVED " + base + "/old"));
        CuratorSuite.checkEquals(List.of("CHILD_ADDED " + x + "=1", "CHILD_UPDATED " + x + "=2", "CHILD_REMOVED " + x,
                "CHILD_REMOVED " + base + "/old"), all, "the cache's events");
        CuratorSuite.checkEquals(0, cache.getCurrentData().size(), "children in the cache at the end");
    }
}
