//! Test harness: a real ZooKeeper server per test, started through `scripts/zookeeper.sh` on a
//! free 127.0.0.1 port with a temporary data dir and stopped by pid when the guard drops (also
//! when the test fails); plus a store exercise shared by both backends.
//!
//! Must never touch a ZooKeeper it did not start, nor bind anything beyond 127.0.0.1.

#![allow(dead_code)]

use eddy_coordination::{
    HaError, HaServices, LeaderSessionId, Leadership, LeadershipEvent, ZooKeeperHaConfig,
};
use eddy_core::JobId;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/zookeeper.sh")
}

/// A ZooKeeper server for one test; stopped (by the pid in its dir) on drop.
pub struct ZkServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl ZkServer {
    pub fn start() -> ZkServer {
        if !Path::new("/usr/share/java/zookeeper.jar").exists() {
            let st = Command::new("bash")
                .arg(script())
                .arg("install")
                .status()
                .expect("run zookeeper.sh install");
            assert!(st.success(), "scripts/zookeeper.sh install failed");
        }
        let dir = tempfile::Builder::new()
            .prefix("eddy-zk-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let server = ZkServer { port, dir };
        server.start_again();
        server
    }

    /// Starts the server (again) on the same port and data dir.
    pub fn start_again(&self) {
        let out = Command::new("bash")
            .arg(script())
            .args(["start", "--port", &self.port.to_string(), "--dir"])
            .arg(self.dir.path())
            .output()
            .expect("run zookeeper.sh start");
        assert!(
            out.status.success(),
            "zookeeper.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg("--dir")
            .arg(self.dir.path())
            .output();
    }

    pub fn quorum(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A config with a 2 s session, a cluster id unique to the test and a fresh storage dir.
    pub fn config(&self, cluster_id: &str, storage: &Path) -> ZooKeeperHaConfig {
        let mut c = ZooKeeperHaConfig::new(self.quorum(), storage);
        c.cluster_id = cluster_id.to_string();
        c.session_timeout = Duration::from_secs(2);
        c.connection_timeout = Duration::from_secs(5);
        c
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.stop();
        // Belt and braces: the script kills by pid; if it could not run, kill the pid directly.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("zookeeper.pid")) {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
        }
    }
}

/// A currently free 127.0.0.1 port.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// The next leadership event within `secs`, or a panic naming what was awaited.
pub async fn next_event(l: &mut Leadership, secs: u64, what: &str) -> LeadershipEvent {
    match tokio::time::timeout(Duration::from_secs(secs), l.next_event()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("{what}: campaign ended"),
        Err(_) => panic!("{what}: no leadership event within {secs} s"),
    }
}

pub async fn granted(l: &mut Leadership, secs: u64, what: &str) -> LeaderSessionId {
    match next_event(l, secs, what).await {
        LeadershipEvent::Granted { session_id } => session_id,
        other => panic!("{what}: expected Granted, got {other:?}"),
    }
}

pub fn assert_fenced<T: std::fmt::Debug>(r: Result<T, HaError>, what: &str) {
    match r {
        Err(HaError::Fenced { .. }) => {}
        other => panic!("{what}: expected Fenced, got {other:?}"),
    }
}

/// Exercises all four stores and `cleanup_job` with leadership `session` of `ha`.
pub async fn exercise_stores(ha: &dyn HaServices, session: LeaderSessionId) {
    let job = JobId::random();
    let other_job = JobId::random();

    // Job graphs: round trip, replace, list, remove.
    let graphs = ha.job_graph_store();
    assert_eq!(graphs.get(job).await.unwrap(), None);
    graphs
        .put(session, job, b"graph-v1".to_vec())
        .await
        .unwrap();
    assert_eq!(
        graphs.get(job).await.unwrap().as_deref(),
        Some(&b"graph-v1"[..])
    );
    graphs
        .put(session, job, b"graph-v2".to_vec())
        .await
        .unwrap();
    assert_eq!(
        graphs.get(job).await.unwrap().as_deref(),
        Some(&b"graph-v2"[..])
    );
    graphs
        .put(session, other_job, vec![7u8; 100_000])
        .await
        .unwrap();
    let mut expected = vec![job, other_job];
    expected.sort();
    assert_eq!(graphs.list_job_ids().await.unwrap(), expected);
    graphs.remove(session, other_job).await.unwrap();
    graphs.remove(session, other_job).await.unwrap();
    assert_eq!(graphs.get(other_job).await.unwrap(), None);
    assert_eq!(graphs.list_job_ids().await.unwrap(), vec![job]);

    // Completed checkpoints: ascending list, idempotent re-add, conflict, remove, remove_all.
    let cps = ha.completed_checkpoint_store();
    assert!(cps.list(job).await.unwrap().is_empty());
    for id in [12u64, 3, 7] {
        cps.add(session, job, id, format!("/chk/{job}/chk-{id}"))
            .await
            .unwrap();
    }
    cps.add(session, job, 7, format!("/chk/{job}/chk-7"))
        .await
        .unwrap();
    assert!(matches!(
        cps.add(session, job, 7, "/elsewhere".into()).await,
        Err(HaError::Conflict { .. })
    ));
    let ids: Vec<u64> = cps
        .list(job)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec![3, 7, 12]);
    assert_eq!(
        cps.list(job).await.unwrap()[1].1,
        format!("/chk/{job}/chk-7")
    );
    cps.remove(session, job, 3).await.unwrap();
    cps.remove(session, job, 3).await.unwrap();
    let ids: Vec<u64> = cps
        .list(job)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, vec![7, 12]);
    cps.remove_all(session, other_job).await.unwrap();
    assert_eq!(cps.list(job).await.unwrap().len(), 2);

    // Checkpoint id counter.
    let counter = ha.checkpoint_id_counter();
    assert_eq!(counter.get(job).await.unwrap(), 1);
    assert_eq!(counter.get_and_increment(session, job).await.unwrap(), 1);
    assert_eq!(counter.get_and_increment(session, job).await.unwrap(), 2);
    assert_eq!(counter.get(job).await.unwrap(), 3);
    counter.set(session, job, 40).await.unwrap();
    assert!(matches!(
        counter.set(session, job, 39).await,
        Err(HaError::CounterWouldDecrease { .. })
    ));
    assert_eq!(counter.get_and_increment(session, job).await.unwrap(), 40);
    assert_eq!(counter.get(other_job).await.unwrap(), 1);

    // Job results and cleanup: no cleanup before the result exists; dirty -> clean.
    let jrs = ha.job_result_store();
    assert!(!jrs.has_result(job).await.unwrap());
    assert!(matches!(
        ha.cleanup_job(session, job).await,
        Err(HaError::NoJobResult { .. })
    ));
    assert!(graphs.get(job).await.unwrap().is_some());
    assert!(matches!(
        jrs.mark_clean(session, job).await,
        Err(HaError::NotFound { .. })
    ));
    let result = serde_json::json!({"state": "FINISHED", "duration_ms": 1234});
    jrs.create_dirty(session, job, result.clone())
        .await
        .unwrap();
    jrs.create_dirty(session, job, serde_json::json!("ignored"))
        .await
        .unwrap();
    assert!(jrs.has_result(job).await.unwrap());
    assert_eq!(jrs.list_dirty().await.unwrap(), vec![(job, result)]);
    ha.cleanup_job(session, job).await.unwrap();
    ha.cleanup_job(session, job).await.unwrap();
    assert_eq!(graphs.get(job).await.unwrap(), None);
    assert!(cps.list(job).await.unwrap().is_empty());
    assert_eq!(counter.get(job).await.unwrap(), 1);
    jrs.mark_clean(session, job).await.unwrap();
    jrs.mark_clean(session, job).await.unwrap();
    assert!(jrs.list_dirty().await.unwrap().is_empty());
    assert!(jrs.has_result(job).await.unwrap());

    // A session id that does not lead is fenced everywhere.
    let stale = LeaderSessionId(session.0 ^ 0x5a5a);
    assert_fenced(
        graphs.put(stale, other_job, b"x".to_vec()).await,
        "put with a foreign session",
    );
    assert_fenced(
        cps.add(stale, other_job, 1, "p".into()).await,
        "add with a foreign session",
    );
    assert_fenced(
        counter.get_and_increment(stale, other_job).await,
        "increment with a foreign session",
    );
    assert_fenced(
        jrs.create_dirty(stale, other_job, serde_json::json!(1))
            .await,
        "jrs with a foreign session",
    );
    assert_eq!(graphs.get(other_job).await.unwrap(), None);
    assert!(!jrs.has_result(other_job).await.unwrap());
}
