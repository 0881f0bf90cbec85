//! Ending a dead process's ZooKeeper session from outside, against a real ZooKeeper 3.8
//! (`scripts/zookeeper.sh` on a free port): the credentials a process learns through its session
//! relay resume and close the session in a plain TCP exchange, the dead leader's latch vanishes
//! at once and the standby is granted long before the session timeout; closing again, or with a
//! wrong password, closes nothing.

mod common;

use common::{granted, ZkServer};
use eddy_coordination::{
    close_session, CloseOutcome, HaServices, SessionCredentials, ZooKeeperHaServices,
};
use std::time::{Duration, Instant};

/// Long enough that a takeover by expiry cannot be mistaken for one by closing.
const SESSION: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_crashed_leaders_recorded_session_hands_leadership_over_at_once() {
    let zk = ZkServer::start();
    let storage = tempfile::tempdir().unwrap();
    let mut cfg = zk.config("close-session", storage.path());
    cfg.session_timeout = SESSION;
    let a = ZooKeeperHaServices::connect_recording_session(cfg.clone())
        .await
        .expect("connect with a session relay");
    let b = ZooKeeperHaServices::connect(cfg.clone())
        .await
        .expect("connect");

    let creds: SessionCredentials = a
        .session_credentials()
        .expect("recorded")
        .borrow()
        .clone()
        .expect("the session's credentials were seen in the handshake");
    assert_eq!(creds.timeout_ms, SESSION.as_millis() as i32, "{creds:?}");
    assert_eq!(
        creds.password.len(),
        16,
        "ZooKeeper's passwords are 16 bytes"
    );

    // The relayed session works like any other: a leader is elected through it.
    let mut la = a.campaign("jm-a".into()).await.unwrap();
    granted(&mut la, 5, "leader through the relay").await;
    let mut lb = b.campaign("jm-b".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lb.try_next_event(), None, "no grant while the leader lives");

    // The leader "crashes": its connection drops, its session stays until closed or expired.
    // (Only now: ZooKeeper drops a live holder's connection as soon as anyone tries to resume
    // its session, even with a wrong password, which is why only a dead process's session may
    // be touched.)
    a.simulate_crash().await;

    // A wrong password resumes nothing and closes nothing.
    let wrong = SessionCredentials {
        password: vec![0u8; 16],
        ..creds.clone()
    };
    let q = zk.quorum();
    let outcome =
        tokio::task::spawn_blocking(move || close_session(&q, &wrong, Duration::from_secs(5)))
            .await
            .unwrap();
    assert_eq!(outcome, Ok(CloseOutcome::AlreadyEnded));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        lb.try_next_event(),
        None,
        "a wrong password ended the session"
    );

    let t0 = Instant::now();
    let (q, c) = (zk.quorum(), creds.clone());
    let outcome =
        tokio::task::spawn_blocking(move || close_session(&q, &c, Duration::from_secs(5)))
            .await
            .unwrap();
    assert_eq!(outcome, Ok(CloseOutcome::Closed));
    granted(&mut lb, 10, "standby after the session was closed").await;
    let took = t0.elapsed();
    assert!(
        took < SESSION / 4,
        "takeover took {took:?}: that is expiry ({SESSION:?}), not the close"
    );

    // Closing it again: ZooKeeper no longer knows the session.
    let (q, c) = (zk.quorum(), creds.clone());
    let again = tokio::task::spawn_blocking(move || close_session(&q, &c, Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(again, Ok(CloseOutcome::AlreadyEnded));
    b.close().await;
}

#[test]
fn closing_at_an_unreachable_quorum_is_an_error_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let quorum = format!("127.0.0.1:{port}");
    let creds = SessionCredentials {
        id: 42,
        password: vec![1; 16],
        timeout_ms: 2000,
    };
    let e = close_session(&quorum, &creds, Duration::from_secs(2)).unwrap_err();
    assert!(e.contains(&quorum) && e.contains("0x2a"), "{e}");
}
