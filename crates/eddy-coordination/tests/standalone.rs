//! The `none` backend: immediate leadership with the fixed session id, retrieval of the local or
//! configured leader, and the shared store exercise in memory and on the filesystem (including a
//! restart that must find the data again). Needs no ZooKeeper.

mod common;

use common::{assert_fenced, exercise_stores, granted};
use eddy_coordination::{
    create_ha_services, HaConfig, HaError, HaServices, LeaderSessionId, LeadershipEvent,
    StandaloneHaConfig, StandaloneHaServices,
};
use eddy_core::JobId;

#[tokio::test]
async fn leadership_is_granted_at_once_with_the_fixed_session_id() {
    let mut cfg = StandaloneHaConfig::new(None);
    cfg.leader_address = Some("jm:6123".into());
    let ha = StandaloneHaServices::new(cfg).unwrap();
    assert_eq!(
        ha.current_leader().await.unwrap().unwrap().address,
        "jm:6123"
    );

    let mut l = ha.campaign("local:1".into()).await.unwrap();
    assert_eq!(
        granted(&mut l, 1, "standalone campaign").await,
        LeaderSessionId::STANDALONE
    );
    assert_eq!(l.current_session(), Some(LeaderSessionId::STANDALONE));
    assert!(matches!(
        ha.campaign("again".into()).await,
        Err(HaError::AlreadyCampaigning)
    ));
    let w = ha.leader_watcher().await.unwrap();
    let leader = w.current().unwrap();
    assert_eq!(
        (leader.address.as_str(), leader.session_id),
        ("local:1", LeaderSessionId::STANDALONE)
    );

    // After resigning, writes are fenced and retrieval falls back to the configured address.
    l.resign().await;
    let job = JobId::random();
    assert_fenced(
        ha.checkpoint_id_counter()
            .get_and_increment(LeaderSessionId::STANDALONE, job)
            .await,
        "increment after resign",
    );
    assert_eq!(
        ha.current_leader().await.unwrap().unwrap().address,
        "jm:6123"
    );
    let mut l = ha.campaign("local:2".into()).await.unwrap();
    assert_eq!(
        l.next_event().await,
        Some(LeadershipEvent::Granted {
            session_id: LeaderSessionId::STANDALONE
        })
    );
}

#[tokio::test]
async fn stores_in_memory() {
    let ha = create_ha_services(HaConfig::None(StandaloneHaConfig::new(None)))
        .await
        .unwrap();
    assert_eq!(ha.kind(), "none");
    let mut l = ha.campaign("jm".into()).await.unwrap();
    let session = granted(&mut l, 1, "campaign").await;
    exercise_stores(ha.as_ref(), session).await;
}

#[tokio::test]
async fn stores_on_the_filesystem_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let job = JobId::random();
    {
        let ha = StandaloneHaServices::new(StandaloneHaConfig::new(Some(dir.path().to_path_buf())))
            .unwrap();
        let mut l = ha.campaign("jm".into()).await.unwrap();
        let session = granted(&mut l, 1, "campaign").await;
        exercise_stores(&ha, session).await;
        ha.job_graph_store()
            .put(session, job, b"persisted".to_vec())
            .await
            .unwrap();
        ha.completed_checkpoint_store()
            .add(session, job, 5, "/chk/5".into())
            .await
            .unwrap();
        ha.checkpoint_id_counter()
            .set(session, job, 6)
            .await
            .unwrap();
        ha.close().await;
    }
    assert!(dir
        .path()
        .join("default/jobgraphs")
        .join(job.to_string())
        .is_file());

    let ha =
        StandaloneHaServices::new(StandaloneHaConfig::new(Some(dir.path().to_path_buf()))).unwrap();
    let mut l = ha.campaign("jm".into()).await.unwrap();
    let session = granted(&mut l, 1, "campaign after restart").await;
    assert_eq!(
        ha.job_graph_store().list_job_ids().await.unwrap(),
        vec![job]
    );
    assert_eq!(
        ha.job_graph_store().get(job).await.unwrap().as_deref(),
        Some(&b"persisted"[..])
    );
    assert_eq!(
        ha.completed_checkpoint_store().list(job).await.unwrap(),
        vec![(5, "/chk/5".to_string())]
    );
    assert_eq!(
        ha.checkpoint_id_counter()
            .get_and_increment(session, job)
            .await
            .unwrap(),
        6
    );
}

#[tokio::test]
async fn damaged_job_graph_blob_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let ha =
        StandaloneHaServices::new(StandaloneHaConfig::new(Some(dir.path().to_path_buf()))).unwrap();
    let mut l = ha.campaign("jm".into()).await.unwrap();
    let session = granted(&mut l, 1, "campaign").await;
    let job = JobId::random();
    ha.job_graph_store()
        .put(session, job, b"0123456789".to_vec())
        .await
        .unwrap();
    let file = dir.path().join("default/jobgraphs").join(job.to_string());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&file, bytes).unwrap();
    let err = ha.job_graph_store().get(job).await.unwrap_err();
    assert!(matches!(err, HaError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&job.to_string()), "{err}");
}

#[tokio::test]
async fn unwritable_storage_dir_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("ha");
    let err = match StandaloneHaServices::new(StandaloneHaConfig::new(Some(bad.clone()))) {
        Err(e) => e,
        Ok(_) => panic!("a storage dir below a file must be rejected"),
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&bad.display().to_string()) && msg.contains("not writable"),
        "{msg}"
    );
}
