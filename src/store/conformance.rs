//! One conformance suite, run unchanged against every backend (SQLite, sled, and a real
//! etcd started on a free loopback port), in the style of openraft's storage suite.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::etcd_process::EtcdProcess;
use super::{
    Backend, Endpoint, Event, EventKind, ListRequest, Revision, StoreConfig, StoreError, TlsFiles,
    Watch,
};

/// How a test gets at a backend: fresh for each test, reopenable on the same data.
#[async_trait]
pub(crate) trait Harness: Send + Sync {
    /// Opens the backend (again) on this harness's data.
    async fn open(&self) -> Arc<dyn Backend>;
}

pub(crate) struct Local {
    _dir: tempfile::TempDir,
    endpoint: Endpoint,
}

impl Local {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let endpoint = Endpoint::Sqlite(dir.path().join("db").join("state.db"));
        Local {
            _dir: dir,
            endpoint,
        }
    }

    pub fn sled() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let endpoint = Endpoint::Sled(dir.path().join("sled"));
        Local {
            _dir: dir,
            endpoint,
        }
    }
}

pub(crate) async fn open_endpoint(endpoint: &Endpoint) -> Arc<dyn Backend> {
    let config = StoreConfig {
        endpoint: endpoint.clone(),
        tls: TlsFiles::default(),
    };
    super::open(&config, &tokio_util::sync::CancellationToken::new())
        .await
        .expect("open the store")
}

#[async_trait]
impl Harness for Local {
    async fn open(&self) -> Arc<dyn Backend> {
        open_endpoint(&self.endpoint).await
    }
}

pub(crate) struct Etcd {
    pub _dir: tempfile::TempDir,
    pub process: tokio::sync::Mutex<EtcdProcess>,
    pub endpoint: Endpoint,
}

impl Etcd {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let process = EtcdProcess::start(dir.path()).await.expect("start etcd");
        let endpoint = Endpoint::Etcd {
            endpoints: vec![process.endpoint()],
            tls: false,
        };
        Etcd {
            _dir: dir,
            process: tokio::sync::Mutex::new(process),
            endpoint,
        }
    }
}

#[async_trait]
impl Harness for Etcd {
    async fn open(&self) -> Arc<dyn Backend> {
        open_endpoint(&self.endpoint).await
    }
}

/// Every test is bounded in time.
pub(crate) async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("the test finished in time")
}

/// Reads events from a watch until `n` have arrived.
pub(crate) async fn take_events(watch: &mut Watch, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("events arrive in time")
            .expect("the watch is still open")
            .expect("the watch has no error");
        out.extend(batch);
    }
    out
}

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

pub(crate) async fn revision_increases_by_one_per_write(h: impl Harness) {
    let s = h.open().await;
    let r0 = s.current_revision().await.unwrap();
    assert!(r0 >= 1);
    assert_eq!(s.create("/registry/a", v("1"), None).await.unwrap(), r0 + 1);
    let kv = s.update("/registry/a", v("2"), r0 + 1, None).await.unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r0 + 1, r0 + 2));
    // A refused write takes no revision.
    assert!(matches!(
        s.create("/registry/a", v("x"), None).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    let (rev, prev) = s.delete("/registry/a", Some(r0 + 2)).await.unwrap();
    assert_eq!(rev, r0 + 3);
    assert_eq!(prev.value, v("2"));
    assert_eq!(s.current_revision().await.unwrap(), r0 + 3);
}

pub(crate) async fn create_is_only_if_absent(h: impl Harness) {
    let s = h.open().await;
    let r1 = s.create("/registry/k", v("a"), None).await.unwrap();
    let err = s.create("/registry/k", v("b"), None).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { ref key } if key == "/registry/k"),
        "{err}"
    );
    assert_eq!(
        s.get("/registry/k", 0).await.unwrap().1.unwrap().value,
        v("a")
    );
    s.delete("/registry/k", None).await.unwrap();
    let r2 = s.create("/registry/k", v("c"), None).await.unwrap();
    let kv = s.get("/registry/k", 0).await.unwrap().1.unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (r2, r2));
    assert!(r2 > r1);
}

pub(crate) async fn update_and_delete_are_guarded(h: impl Harness) {
    let s = h.open().await;
    let r1 = s.create("/registry/g", v("1"), None).await.unwrap();
    let r2 = s
        .update("/registry/g", v("2"), r1, None)
        .await
        .unwrap()
        .mod_revision;
    match s.update("/registry/g", v("3"), r1, None).await.unwrap_err() {
        StoreError::Conflict {
            expected, current, ..
        } => {
            assert_eq!(expected, r1);
            let current = current.expect("the current state comes with a conflict");
            assert_eq!((current.mod_revision, current.value), (r2, v("2")));
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert!(matches!(
        s.delete("/registry/g", Some(r1)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.update("/registry/missing", v("x"), r1, None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.delete("/registry/missing", None).await,
        Err(StoreError::NotFound { .. })
    ));
    let (_, prev) = s.delete("/registry/g", Some(r2)).await.unwrap();
    assert_eq!((prev.value, prev.mod_revision), (v("2"), r2));
    assert_eq!(s.get("/registry/g", 0).await.unwrap().1, None);
    assert!(matches!(
        s.create("", v("x"), None).await,
        Err(StoreError::InvalidKey { .. })
    ));
}

pub(crate) async fn get_reads_past_revisions(h: impl Harness) {
    let s = h.open().await;
    let r1 = s.create("/registry/p", v("1"), None).await.unwrap();
    let r2 = s
        .update("/registry/p", v("2"), r1, None)
        .await
        .unwrap()
        .mod_revision;
    let (r3, _) = s.delete("/registry/p", None).await.unwrap();
    assert_eq!(
        s.get("/registry/p", r1).await.unwrap(),
        (
            r1,
            Some(super::KeyValue {
                key: "/registry/p".into(),
                value: v("1"),
                create_revision: r1,
                mod_revision: r1,
            })
        )
    );
    assert_eq!(
        s.get("/registry/p", r2).await.unwrap().1.unwrap().value,
        v("2")
    );
    assert_eq!(s.get("/registry/p", r3).await.unwrap().1, None);
    assert_eq!(s.get("/registry/p", r1 - 1).await.unwrap().1, None);
    assert!(matches!(
        s.get("/registry/p", r3 + 100).await,
        Err(StoreError::FutureRevision { .. })
    ));
}

pub(crate) async fn prefixes_are_isolated(h: impl Harness) {
    let s = h.open().await;
    let start = s.current_revision().await.unwrap() + 1;
    for key in [
        "/registry/pods/default/a",
        "/registry/pods/kube-system/b",
        "/registry/podsx/c",
        "/registry/pod",
        "/registry/pods0",
    ] {
        s.create(key, v(key), None).await.unwrap();
    }
    let list = s
        .list(&ListRequest::prefix("/registry/pods/"))
        .await
        .unwrap();
    let keys: Vec<_> = list.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/registry/pods/default/a", "/registry/pods/kube-system/b"]
    );
    assert!(!list.more);
    assert_eq!(s.count("/registry/pods/").await.unwrap().1, 2);
    assert_eq!(s.count("/registry/").await.unwrap().1, 5);
    assert_eq!(s.count("/nothing/").await.unwrap().1, 0);
    let mut w = s.watch("/registry/pods/", start).await.unwrap();
    s.create("/registry/podsx/d", v("d"), None).await.unwrap();
    s.create("/registry/pods/default/e", v("e"), None)
        .await
        .unwrap();
    let events = take_events(&mut w, 3).await;
    let keys: Vec<_> = events.iter().map(|e| e.kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/registry/pods/default/a",
            "/registry/pods/kube-system/b",
            "/registry/pods/default/e"
        ]
    );
}

pub(crate) async fn paging_is_consistent_while_writes_go_on(h: impl Harness) {
    let s = h.open().await;
    for i in 0..25 {
        s.create(&format!("/registry/cm/{i:02}"), v("v"), None)
            .await
            .unwrap();
    }
    let mut req = ListRequest {
        prefix: "/registry/cm/".into(),
        start_key: None,
        limit: 10,
        revision: 0,
    };
    let first = s.list(&req).await.unwrap();
    assert_eq!((first.kvs.len(), first.more), (10, true));
    let mut seen: Vec<String> = first.kvs.iter().map(|kv| kv.key.clone()).collect();
    req.revision = first.revision;
    // Writes between pages: a new key, a deleted one, an updated one.
    s.create("/registry/cm/13a", v("new"), None).await.unwrap();
    s.delete("/registry/cm/20", None).await.unwrap();
    let old = s.get("/registry/cm/24", 0).await.unwrap().1.unwrap();
    s.update("/registry/cm/24", v("changed"), old.mod_revision, None)
        .await
        .unwrap();
    loop {
        req.start_key = Some(format!("{}\0", seen.last().unwrap()));
        let page = s.list(&req).await.unwrap();
        assert_eq!(page.revision, first.revision);
        for kv in &page.kvs {
            assert_eq!(kv.value, v("v"), "{} is seen as of the first page", kv.key);
        }
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
    }
    let expected: Vec<String> = (0..25).map(|i| format!("/registry/cm/{i:02}")).collect();
    assert_eq!(seen, expected);
    let now = s.list(&ListRequest::prefix("/registry/cm/")).await.unwrap();
    assert_eq!(now.kvs.len(), 25);
}

pub(crate) async fn one_winner_when_many_race(h: impl Harness) {
    let s = h.open().await;
    let r = s.create("/registry/race", v("0"), None).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let s = s.clone();
        tasks.spawn(async move { s.update("/registry/race", v(&i.to_string()), r, None).await });
    }
    let (mut won, mut lost) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => lost += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!((won, lost), (1, 31));
    assert_eq!(s.current_revision().await.unwrap(), r + 1);
}

pub(crate) async fn watch_replays_from_a_past_revision_in_order(h: impl Harness) {
    let s = h.open().await;
    let start = s.current_revision().await.unwrap() + 1;
    let r1 = s.create("/registry/w/a", v("1"), None).await.unwrap();
    s.update("/registry/w/a", v("2"), r1, None).await.unwrap();
    s.create("/registry/w/b", v("b"), None).await.unwrap();
    s.delete("/registry/w/a", None).await.unwrap();
    let mut w = s.watch("/registry/w/", start).await.unwrap();
    // Live writes while the replay is read, from another task.
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                s.create(&format!("/registry/w/live-{i:03}"), v("x"), None)
                    .await
                    .unwrap();
            }
        })
    };
    let events = take_events(&mut w, 204).await;
    writer.await.unwrap();
    let revisions: Vec<Revision> = events.iter().map(Event::revision).collect();
    let expected: Vec<Revision> = (start..start + 204).collect();
    assert_eq!(revisions, expected, "in order, no gap, no duplicate");
    assert_eq!(
        (events[0].kind, events[0].prev.as_ref()),
        (EventKind::Put, None)
    );
    assert_eq!(events[1].prev.as_ref().unwrap().value, v("1"));
    assert_eq!(events[3].kind, EventKind::Delete);
    assert_eq!(events[3].kv.key, "/registry/w/a");
    assert_eq!(events[3].prev.as_ref().unwrap().value, v("2"));
}

pub(crate) async fn slow_watchers_do_not_block_writers(h: impl Harness) {
    let s = h.open().await;
    let start = s.current_revision().await.unwrap() + 1;
    let mut w = s.watch("/registry/slow/", 0).await.unwrap();
    // Nobody reads the watch while 3000 writes go through, 30 at a time.
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..30 {
        let s = s.clone();
        tasks.spawn(async move {
            for i in 0..100 {
                s.create(&format!("/registry/slow/{t:02}-{i:03}"), v("x"), None)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    // The watcher either delivers everything in order, or ends with a clear error.
    let mut next = start;
    while next < start + 3000 {
        match tokio::time::timeout(Duration::from_secs(30), w.next())
            .await
            .expect("in time")
        {
            Some(Ok(events)) => {
                for e in events {
                    assert_eq!(e.revision(), next);
                    next += 1;
                }
            }
            Some(Err(err)) => {
                assert!(
                    matches!(err, StoreError::Compacted { .. } | StoreError::Etcd { .. }),
                    "{err}"
                );
                return;
            }
            None => panic!("the watch ended without an error"),
        }
    }
}

pub(crate) async fn compacted_revisions_are_gone(h: impl Harness) {
    let s = h.open().await;
    let r1 = s.create("/registry/c/a", v("1"), None).await.unwrap();
    let r2 = s
        .update("/registry/c/a", v("2"), r1, None)
        .await
        .unwrap()
        .mod_revision;
    let r3 = s.create("/registry/c/b", v("b"), None).await.unwrap();
    let (r4, _) = s.delete("/registry/c/b", None).await.unwrap();
    let r5 = s.create("/registry/c/c", v("c"), None).await.unwrap();
    s.compact(r4).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), r4);
    match s.watch("/registry/c/", r2).await {
        Err(StoreError::Compacted { compacted, .. }) => assert_eq!(compacted, r4),
        Err(other) => panic!("expected Compacted, got {other}"),
        Ok(mut w) => match w.next().await {
            Some(Err(StoreError::Compacted { compacted, .. })) => assert_eq!(compacted, r4),
            _ => panic!("expected Compacted"),
        },
    }
    assert!(matches!(
        s.get("/registry/c/a", r3).await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        s.list(&ListRequest {
            revision: r1,
            ..ListRequest::prefix("/registry/c/")
        })
        .await,
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        s.compact(r2).await,
        Err(StoreError::Compacted { .. })
    ));
    // The state as of the compaction point and everything after it remain.
    assert_eq!(
        s.get("/registry/c/a", r4).await.unwrap().1.unwrap().value,
        v("2")
    );
    assert_eq!(s.get("/registry/c/b", r4).await.unwrap().1, None);
    let list = s.list(&ListRequest::prefix("/registry/c/")).await.unwrap();
    let keys: Vec<_> = list.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/registry/c/a", "/registry/c/c"]);
    let mut w = s.watch("/registry/c/", r4 + 1).await.unwrap();
    let events = take_events(&mut w, 1).await;
    assert_eq!(events[0].revision(), r5);
}

pub(crate) async fn keys_expire_with_a_delete_event(h: impl Harness) {
    let s = h.open().await;
    let mut w = s.watch("/registry/events/", 0).await.unwrap();
    let r = s
        .create("/registry/events/e1", v("e"), Some(Duration::from_secs(1)))
        .await
        .unwrap();
    s.create("/registry/events/keep", v("k"), None)
        .await
        .unwrap();
    let events = take_events(&mut w, 3).await;
    assert_eq!(events[2].kind, EventKind::Delete);
    assert_eq!(events[2].kv.key, "/registry/events/e1");
    assert_eq!(events[2].prev.as_ref().unwrap().mod_revision, r);
    assert_eq!(s.get("/registry/events/e1", 0).await.unwrap().1, None);
    assert!(s.get("/registry/events/keep", 0).await.unwrap().1.is_some());
}

pub(crate) async fn reopen_keeps_every_key_and_revision(h: impl Harness) {
    let s = h.open().await;
    let r1 = s.create("/registry/r/a", v("1"), None).await.unwrap();
    let r2 = s
        .update("/registry/r/a", v("2"), r1, None)
        .await
        .unwrap()
        .mod_revision;
    s.create("/registry/r/b", v("b"), None).await.unwrap();
    let (r4, _) = s.delete("/registry/r/b", None).await.unwrap();
    s.close().await.unwrap();
    drop(s);
    let s = h.open().await;
    assert_eq!(s.current_revision().await.unwrap(), r4);
    let kv = s.get("/registry/r/a", 0).await.unwrap().1.unwrap();
    assert_eq!(
        (kv.value, kv.create_revision, kv.mod_revision),
        (v("2"), r1, r2)
    );
    assert_eq!(
        s.get("/registry/r/a", r1).await.unwrap().1.unwrap().value,
        v("1")
    );
    assert_eq!(
        s.create("/registry/r/c", v("c"), None).await.unwrap(),
        r4 + 1
    );
    assert!(s.db_size().await.unwrap() > 0);
}

/// Checks what a crashed writer left: every acknowledged create is there at its revision,
/// and the revisions from `first` to the current one have no hole.
pub(crate) async fn check_after_crash(
    s: &Arc<dyn Backend>,
    acked: &[(String, Revision)],
    first: Revision,
) {
    for (key, rev) in acked {
        let kv = s.get(key, 0).await.unwrap().1;
        let kv = kv.unwrap_or_else(|| panic!("acknowledged {key} at {rev} is lost"));
        assert_eq!(kv.mod_revision, *rev, "{key}");
    }
    let current = s.current_revision().await.unwrap();
    let list = s.list(&ListRequest::prefix("/crash/")).await.unwrap();
    let revisions: BTreeSet<Revision> = list.kvs.iter().map(|kv| kv.mod_revision).collect();
    let expected: BTreeSet<Revision> = (first..=current).collect();
    assert_eq!(revisions, expected, "the revision sequence has no hole");
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::bounded(super::$name(super::Local::sqlite())).await
                }
            )*
        }
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::bounded(super::$name(super::Local::sled())).await
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::bounded(async { super::$name(super::Etcd::start().await).await }).await
                }
            )*
        }
    };
}

suite!(
    revision_increases_by_one_per_write,
    create_is_only_if_absent,
    update_and_delete_are_guarded,
    get_reads_past_revisions,
    prefixes_are_isolated,
    paging_is_consistent_while_writes_go_on,
    one_winner_when_many_race,
    watch_replays_from_a_past_revision_in_order,
    slow_watchers_do_not_block_writers,
    compacted_revisions_are_gone,
    keys_expire_with_a_delete_event,
    reopen_keeps_every_key_and_revision,
);
