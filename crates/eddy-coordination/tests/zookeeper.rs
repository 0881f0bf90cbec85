//! The `zookeeper` backend against a real ZooKeeper 3.8 (started per test by
//! `scripts/zookeeper.sh` on a free port, stopped on drop): election and failover, retrieval,
//! fencing of a deposed leader in every store, SUSPENDED and LOST connections across a ZooKeeper
//! restart, the stores, and fail-fast construction errors.
//!
//! Deposition is simulated inside one process in three ways: a crash (`simulate_crash`: the
//! session is dropped without closing, ZooKeeper expires it after the session timeout); deleting
//! the leader's latch with a separate ZooKeeper client (the leader does not notice until it writes
//! — like a paused process whose session expired); and stopping ZooKeeper longer than the session
//! timeout (the client declares the session LOST). A SIGSTOP test needs separate processes and
//! belongs to the end-to-end tests.

mod common;

use common::{assert_fenced, exercise_stores, granted, next_event, ZkServer};
use eddy_coordination::{
    create_ha_services, ConnectionState, HaConfig, HaError, HaServices, LeaderSessionId,
    LeadershipEvent, ZooKeeperHaConfig, ZooKeeperHaServices,
};
use eddy_core::JobId;
use std::time::{Duration, Instant};

async fn connect(zk: &ZkServer, cluster: &str, storage: &std::path::Path) -> ZooKeeperHaServices {
    ZooKeeperHaServices::connect(zk.config(cluster, storage))
        .await
        .expect("connect to the test ZooKeeper")
}

/// Waits until `w` reports a leader with `address`.
async fn wait_for_leader(
    w: &mut eddy_coordination::LeaderWatcher,
    address: &str,
    secs: u64,
) -> LeaderSessionId {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(info) = w.current() {
            if info.address == address {
                return info.session_id;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, w.changed()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("watcher failed: {e}"),
            Err(_) => panic!(
                "retrieval did not report leader {address} within {secs} s (now {:?})",
                w.current()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_failover_when_the_leader_crashes() {
    let zk = ZkServer::start();
    let storage = tempfile::tempdir().unwrap();
    let a = connect(&zk, "failover", storage.path()).await;
    let b = connect(&zk, "failover", storage.path()).await;
    let observer = connect(&zk, "failover", storage.path()).await;

    let mut la = a.campaign("jm-a:6123".into()).await.unwrap();
    let sa = granted(&mut la, 5, "first contender").await;
    let mut lb = b.campaign("jm-b:6123".into()).await.unwrap();
    let mut watcher = observer.leader_watcher().await.unwrap();
    assert_eq!(wait_for_leader(&mut watcher, "jm-a:6123", 5).await, sa);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        lb.try_next_event(),
        None,
        "a standby must not be granted while the leader lives"
    );
    assert!(matches!(
        a.campaign("again".into()).await,
        Err(HaError::AlreadyCampaigning)
    ));

    // Crash the leader: its session is not closed, so ZooKeeper expires it after ~2 s.
    let t0 = Instant::now();
    a.simulate_crash().await;
    let sb = granted(&mut lb, 10, "standby after the leader crashed").await;
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "takeover took {took:?} with a 2 s session timeout"
    );
    assert_ne!(sa, sb);
    assert_eq!(wait_for_leader(&mut watcher, "jm-b:6123", 5).await, sb);
    let current = observer.current_leader().await.unwrap().unwrap();
    assert_eq!(
        (current.address.as_str(), current.session_id),
        ("jm-b:6123", sb)
    );

    // A clean resign hands over at once and clears leader-info.
    lb.resign().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while observer.current_leader().await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "leader-info not cleared after resign"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.close().await;
    observer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cannot_write_to_any_store() {
    let zk = ZkServer::start();
    let storage = tempfile::tempdir().unwrap();
    let cluster = "fencing";
    let x = connect(&zk, cluster, storage.path()).await;
    let y = connect(&zk, cluster, storage.path()).await;
    let raw = zookeeper_client::Client::connect(&zk.quorum())
        .await
        .unwrap();
    let leader_dir = format!("{}/leader", x.base_path());

    let mut lx = x.campaign("jm-x".into()).await.unwrap();
    let sx = granted(&mut lx, 5, "x").await;
    let ly = y.campaign("jm-y".into()).await.unwrap();

    // Baseline written by the legitimate leader.
    let job = JobId::random();
    let done_job = JobId::random();
    x.job_graph_store()
        .put(sx, job, b"graph-1".to_vec())
        .await
        .unwrap();
    x.completed_checkpoint_store()
        .add(sx, job, 1, "/chk/1".into())
        .await
        .unwrap();
    assert_eq!(
        x.checkpoint_id_counter()
            .get_and_increment(sx, job)
            .await
            .unwrap(),
        1
    );
    x.job_result_store()
        .create_dirty(sx, done_job, serde_json::json!("FINISHED"))
        .await
        .unwrap();

    // Each round deposes the current leader behind its back (its latch is deleted by another
    // client, as if its session had expired while it was paused), waits until the other one
    // leads, and then lets the deposed one try one kind of write: ZooKeeper must reject it.
    let services = [&x, &y];
    let mut leaderships = [lx, ly];
    let mut sessions = [Some(sx), None];
    let mut cur = 0usize;
    for round in 0..10 {
        let mut latches: Vec<String> = raw.list_children(&leader_dir).await.unwrap();
        latches.sort();
        assert!(!latches.is_empty(), "round {round}: no latch");
        raw.delete(&format!("{leader_dir}/{}", latches[0]), None)
            .await
            .unwrap();
        let other = 1 - cur;
        let s_other = granted(
            &mut leaderships[other],
            10,
            &format!("round {round}: new leader"),
        )
        .await;
        sessions[other] = Some(s_other);
        let stale = sessions[cur].take().unwrap();
        let ha = services[cur];
        let r: Result<(), HaError> = match round {
            0 => {
                ha.job_graph_store()
                    .put(stale, job, b"graph-2".to_vec())
                    .await
            }
            1 => ha.job_graph_store().remove(stale, job).await,
            2 => {
                ha.completed_checkpoint_store()
                    .add(stale, job, 2, "/chk/2".into())
                    .await
            }
            3 => ha.completed_checkpoint_store().remove(stale, job, 1).await,
            4 => ha.completed_checkpoint_store().remove_all(stale, job).await,
            5 => ha
                .checkpoint_id_counter()
                .get_and_increment(stale, job)
                .await
                .map(|_| ()),
            6 => ha.checkpoint_id_counter().set(stale, job, 100).await,
            7 => {
                ha.job_result_store()
                    .create_dirty(stale, job, serde_json::json!("FAILED"))
                    .await
            }
            8 => ha.job_result_store().mark_clean(stale, done_job).await,
            _ => ha.cleanup_job(stale, done_job).await,
        };
        assert_fenced(r, &format!("round {round}: write of the deposed leader"));
        // The deposed leader learns of it from the failed write, is revoked and re-joins.
        assert_eq!(
            next_event(&mut leaderships[cur], 5, &format!("round {round}: revoke")).await,
            LeadershipEvent::Revoked
        );
        cur = other;
    }

    // Nothing changed.
    let reader = services[cur];
    assert_eq!(
        reader.job_graph_store().get(job).await.unwrap().as_deref(),
        Some(&b"graph-1"[..])
    );
    assert_eq!(
        reader.completed_checkpoint_store().list(job).await.unwrap(),
        vec![(1, "/chk/1".to_string())]
    );
    assert_eq!(reader.checkpoint_id_counter().get(job).await.unwrap(), 2);
    assert!(!reader.job_result_store().has_result(job).await.unwrap());
    assert_eq!(
        reader.job_result_store().list_dirty().await.unwrap().len(),
        1
    );
    let blobs = std::fs::read_dir(storage.path().join(cluster).join("jobgraphs"))
        .unwrap()
        .count();
    assert_eq!(blobs, 1, "a fenced put must not leave its blob behind");

    // The current leader can still write.
    let s = sessions[cur].unwrap();
    assert_eq!(
        reader
            .checkpoint_id_counter()
            .get_and_increment(s, job)
            .await
            .unwrap(),
        2
    );
    x.close().await;
    y.close().await;
}

/// Waits until the connection state is `want`.
async fn wait_state(
    rx: &mut tokio::sync::watch::Receiver<ConnectionState>,
    want: ConnectionState,
    secs: u64,
) {
    let r = tokio::time::timeout(Duration::from_secs(secs), rx.wait_for(|s| *s == want)).await;
    assert!(
        matches!(r, Ok(Ok(_))),
        "connection state did not become {want:?} within {secs} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_session_revokes_and_the_contender_rejoins_with_a_new_session() {
    let zk = ZkServer::start();
    let storage = tempfile::tempdir().unwrap();
    let a = connect(&zk, "lost", storage.path()).await;
    let observer = connect(&zk, "lost", storage.path()).await;
    let mut states = a.connection_state();
    let mut la = a.campaign("jm-a".into()).await.unwrap();
    let s1 = granted(&mut la, 5, "campaign").await;
    let job = JobId::random();
    a.job_graph_store()
        .put(s1, job, b"kept".to_vec())
        .await
        .unwrap();
    assert_eq!(
        a.checkpoint_id_counter()
            .get_and_increment(s1, job)
            .await
            .unwrap(),
        1
    );

    // ZooKeeper down: SUSPENDED revokes at once (suspended connections are not tolerated) ...
    zk.stop();
    assert_eq!(
        next_event(&mut la, 5, "revoke on SUSPENDED").await,
        LeadershipEvent::Revoked
    );
    assert_fenced(
        a.checkpoint_id_counter().get_and_increment(s1, job).await,
        "write while suspended",
    );
    // ... and after the session timeout the client declares the session LOST.
    wait_state(&mut states, ConnectionState::Lost, 10).await;
    zk.start_again();
    wait_state(&mut states, ConnectionState::Connected, 10).await;
    // The old session (and its latch) expires on the restarted server; then a new grant.
    let s2 = granted(&mut la, 15, "leadership with a new session after LOST").await;
    assert_ne!(s1, s2);
    assert_fenced(
        a.checkpoint_id_counter().get_and_increment(s1, job).await,
        "old session after re-join",
    );
    assert_eq!(
        a.checkpoint_id_counter()
            .get_and_increment(s2, job)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        a.job_graph_store().get(job).await.unwrap().as_deref(),
        Some(&b"kept"[..])
    );
    let mut w = observer.leader_watcher().await.unwrap();
    assert_eq!(wait_for_leader(&mut w, "jm-a", 10).await, s2);
    a.close().await;
    observer.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerated_suspension_keeps_leadership_through_a_short_zookeeper_restart() {
    let zk = ZkServer::start();
    let storage = tempfile::tempdir().unwrap();
    let mut cfg = zk.config("tolerate", storage.path());
    cfg.tolerate_suspended_connections = true;
    cfg.session_timeout = Duration::from_secs(6);
    let a = ZooKeeperHaServices::connect(cfg).await.unwrap();
    let mut states = a.connection_state();
    let mut la = a.campaign("jm-a".into()).await.unwrap();
    let s1 = granted(&mut la, 5, "campaign").await;

    zk.stop();
    wait_state(&mut states, ConnectionState::Suspended, 10).await;
    zk.start_again();
    wait_state(&mut states, ConnectionState::Connected, 10).await;
    assert_eq!(
        la.try_next_event(),
        None,
        "a tolerated suspension must not revoke"
    );
    assert_eq!(la.current_session(), Some(s1));
    let job = JobId::random();
    assert_eq!(
        a.checkpoint_id_counter()
            .get_and_increment(s1, job)
            .await
            .unwrap(),
        1
    );
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_a_counter_that_keeps_increasing_across_leaders() {
    let zk = ZkServer::start();
    let storage = tempfile::tempdir().unwrap();
    let cfg = zk.config("stores", storage.path());
    let a = create_ha_services(HaConfig::ZooKeeper(cfg.clone()))
        .await
        .unwrap();
    assert_eq!(a.kind(), "zookeeper");
    let b = create_ha_services(HaConfig::ZooKeeper(cfg)).await.unwrap();
    let mut la = a.campaign("jm-a".into()).await.unwrap();
    let sa = granted(&mut la, 5, "a").await;
    exercise_stores(a.as_ref(), sa).await;
    let blobs = std::fs::read_dir(storage.path().join("stores").join("jobgraphs"))
        .unwrap()
        .count();
    assert_eq!(
        blobs, 0,
        "replaced and removed job graph blobs must be deleted"
    );

    let job = JobId::random();
    let counter = a.checkpoint_id_counter();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(counter.get_and_increment(sa, job).await.unwrap());
    }
    let mut lb = b.campaign("jm-b".into()).await.unwrap();
    la.resign().await;
    let sb = granted(&mut lb, 5, "b after a resigned").await;
    assert_fenced(
        counter.get_and_increment(sa, job).await,
        "a after resigning",
    );
    for _ in 0..3 {
        seen.push(
            b.checkpoint_id_counter()
                .get_and_increment(sb, job)
                .await
                .unwrap(),
        );
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5, 6]);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn unreachable_quorum_fails_within_the_connection_timeout() {
    let port = common::free_port();
    let storage = tempfile::tempdir().unwrap();
    let mut cfg = ZooKeeperHaConfig::new(format!("127.0.0.1:{port}"), storage.path());
    cfg.connection_timeout = Duration::from_secs(1);
    cfg.session_timeout = Duration::from_secs(2);
    let t0 = Instant::now();
    let err = match ZooKeeperHaServices::connect(cfg).await {
        Err(e) => e,
        Ok(_) => panic!("nothing listens on port {port}"),
    };
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1800), "took {took:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot reach ZooKeeper quorum '127.0.0.1:{port}' within 1 s")
    );
}

#[tokio::test]
async fn unwritable_storage_dir_fails_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("ha");
    let cfg = ZooKeeperHaConfig::new("127.0.0.1:1", &bad);
    let err = match ZooKeeperHaServices::connect(cfg).await {
        Err(e) => e,
        Ok(_) => panic!("storage dir below a file must be rejected"),
    };
    assert!(
        matches!(err, HaError::StorageDirNotWritable { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );
}
