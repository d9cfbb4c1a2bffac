//! Retention, in process with a clock the test moves: an ended session's
//! evidence, key and collateral go while a live one's stay (and it can
//! still be reappraised); audit records past the retention go behind a
//! signed checkpoint that `audit verify` starts from, the chain goes on
//! from it, and a checkpoint edited in the database or without its key is
//! refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use attest_gate_verifier::{
    router, verify_audit_log, AuditError, CollateralSources, RateLimitConfig, RevocationMode,
    Service, ServiceConfig, Store,
};
use axum::body::Body;
use axum::http::Request;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{Agent, Tee};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use tower::ServiceExt;

struct InProcess {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    store: Store,
    service: Arc<Service>,
    clock: Arc<AtomicI64>,
    admin_token: String,
}

impl InProcess {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let url = format!("sqlite://{}", data_dir.join("attest-gate.db").display());
        let store = Store::open(&url).await.unwrap();
        let config = ServiceConfig {
            issuer: "https://verifier.test".into(),
            data_dir: data_dir.clone(),
            measurements_dir: common::repo().join("measurements"),
            policy_file: None,
            dev: true,
            nonce_ttl: Duration::seconds(60),
            default_token_ttl: 600,
            rate_limits: RateLimitConfig {
                enabled: false,
                ..RateLimitConfig::default()
            },
            trusted_proxies: vec![],
            forwarded_header: attest_gate_verifier::ForwardedHeader::default(),
            audit_retention: Some(Duration::days(1)),
            credential_retention: Some(Duration::days(1)),
            svid_name_constraint: false,
        };
        let clock = Arc::new(AtomicI64::new(OffsetDateTime::now_utc().unix_timestamp()));
        let read = Arc::clone(&clock);
        let (service, admin_token) = Service::start(
            config,
            store.clone(),
            CollateralSources::new(),
            Arc::new(move || {
                OffsetDateTime::from_unix_timestamp(read.load(Ordering::SeqCst)).unwrap()
            }),
        )
        .unwrap();
        Self {
            _dir: dir,
            data_dir,
            store,
            service: Arc::new(service),
            clock,
            admin_token: admin_token.unwrap(),
        }
    }

    fn advance(&self, seconds: i64) -> OffsetDateTime {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
        self.service.now()
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let request = Request::post(path)
            .header("authorization", format!("Bearer {}", self.admin_token))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = router(Arc::clone(&self.service))
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// An SEV-SNP attestation (its evidence does not depend on the clock)
    /// lasting `ttl` seconds: its session ID.
    async fn attest(&self, ttl: u32) -> String {
        let (status, body) = self.attest_as(&Agent::new(), ttl).await;
        assert_eq!(status, 200, "{body}");
        body["session_id"].as_str().unwrap().to_string()
    }

    /// The same by `agent`: the answer.
    async fn attest_as(&self, agent: &Agent, ttl: u32) -> (u16, Value) {
        let (_, challenge) = self.post("/v1/challenge", &json!({})).await;
        let nonce = URL_SAFE_NO_PAD
            .decode(challenge["nonce"].as_str().unwrap())
            .unwrap();
        let mut request = common::signed_request(Tee::Snp, agent, &nonce, &agent.model);
        request["ttl_seconds"] = json!(ttl);
        self.post("/v1/attest", &request).await
    }

    async fn sql(&self, statement: &str) {
        let Store::Sqlite(pool) = &self.store else {
            unreachable!()
        };
        sqlx::query(statement).execute(pool).await.unwrap();
    }

    async fn count(&self, query: &str) -> i64 {
        let Store::Sqlite(pool) = &self.store else {
            unreachable!()
        };
        sqlx::query_scalar(query).fetch_one(pool).await.unwrap()
    }
}

#[tokio::test]
async fn ended_sessions_go_live_ones_stay_and_can_be_reappraised() {
    let server = InProcess::start().await;
    let ended = server.attest(60).await;
    server.advance(500);
    let live = server.attest(600).await;
    // Both sessions name the same VCEK chain: each file stored once.
    let files = server.count("SELECT COUNT(*) FROM collateral_files").await;
    let named = {
        let Store::Sqlite(pool) = &server.store else {
            unreachable!()
        };
        let refs: Vec<String> = sqlx::query_scalar("SELECT collateral_refs FROM session_evidence")
            .fetch_all(pool)
            .await
            .unwrap();
        refs.iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Map<String, Value>>(r)
                    .unwrap()
                    .len()
            })
            .collect::<Vec<_>>()
    };
    assert!(files > 0);
    assert_eq!(named, vec![files as usize; 2]);
    // And their register values, once: both credentials name one set.
    assert_eq!(server.count("SELECT COUNT(*) FROM register_sets").await, 1);
    assert_eq!(
        server
            .count("SELECT COUNT(DISTINCT register_set) FROM credentials")
            .await,
        1
    );

    // The first ended more than the grace period (600 s) ago; the second
    // is live.
    let now = server.advance(200);
    server.service.prune(now).await;
    let sessions: Vec<String> = {
        let Store::Sqlite(pool) = &server.store else {
            unreachable!()
        };
        sqlx::query_scalar("SELECT session_id FROM session_evidence")
            .fetch_all(pool)
            .await
            .unwrap()
    };
    assert_eq!(sessions, vec![live.clone()], "{ended} should be gone");
    // Its collateral files are still named by the live session.
    assert_eq!(
        server.count("SELECT COUNT(*) FROM collateral_files").await,
        files
    );

    let reappraised = server
        .service
        .reappraise(RevocationMode::Immediate, now)
        .await
        .unwrap();
    assert_eq!(reappraised["checked"], 1, "{reappraised}");
    assert_eq!(
        reappraised["revoked"].as_array().unwrap().len(),
        0,
        "{reappraised}"
    );
    assert_eq!(
        reappraised["not_judged"].as_array().unwrap().len(),
        0,
        "{reappraised}"
    );

    // Long after both: nothing of either is left.
    let later = server.advance(2 * 86_400);
    server.service.prune(later).await;
    for table in ["session_evidence", "collateral_files"] {
        let n = server.count(&format!("SELECT COUNT(*) FROM {table}")).await;
        assert_eq!(n, 0, "{table}");
    }
}

#[tokio::test]
async fn expired_credentials_go_after_the_retention_but_revoked_ones_keep_their_key_refused() {
    let server = InProcess::start().await;
    let (forgotten, revoked) = (Agent::new(), Agent::new());
    let (status, _) = server.attest_as(&forgotten, 60).await;
    assert_eq!(status, 200);
    let (status, body) = server.attest_as(&revoked, 60).await;
    assert_eq!(status, 200, "{body}");
    let session = body["session_id"].as_str().unwrap();
    let (status, body) = server
        .post(
            "/v1/admin/revoke",
            &json!({"kind": "session", "target": session, "mode": "immediate", "reason": "test"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.count("SELECT COUNT(*) FROM credentials").await, 2);

    // A delegated credential, long expired, of a session that is still
    // live: kept while its session lives, so revoking the session still
    // reaches its key.
    let t0 = server.service.now().unix_timestamp();
    for (jti, expires_at) in [("old-child", t0 - 86_400), ("live-root", t0 + 200_000)] {
        server
            .sql(&format!(
                "INSERT INTO credentials (jti, subject, session_id, parent_jti, workload, jkt, \
                 scope, audience, issued_at, expires_at, test_root, model_digest, measurements, depth) \
                 VALUES ('{jti}', 's', 'live-session', NULL, 'w', 'k-{jti}', 'x', 'a', {}, \
                 {expires_at}, TRUE, '00', '00', 0)",
                t0 - 90_000
            ))
            .await;
    }
    assert_eq!(server.count("SELECT COUNT(*) FROM credentials").await, 4);

    // Expired, but within the retention (one day): both stay.
    let now = server.advance(43_200);
    server.service.prune(now).await;
    assert_eq!(server.count("SELECT COUNT(*) FROM credentials").await, 4);

    // Past it: the unrevoked one goes; the revoked one stays, and its key
    // is still refused.
    let later = server.advance(86_400);
    server.service.prune(later).await;
    let left: Vec<String> = {
        let Store::Sqlite(pool) = &server.store else {
            unreachable!()
        };
        sqlx::query_scalar("SELECT session_id FROM credentials ORDER BY jti")
            .fetch_all(pool)
            .await
            .unwrap()
    };
    let mut expected = vec![
        session.to_string(),
        "live-session".into(),
        "live-session".into(),
    ];
    expected.sort_by_key(|s| s != session);
    assert_eq!(left, expected);
    let (status, body) = server.attest_as(&revoked, 60).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "revoked", "{body}");
    // The forgotten key attests as any other.
    let (status, body) = server.attest_as(&forgotten, 60).await;
    assert_eq!(status, 200, "{body}");
}

/// On PostgreSQL (READ COMMITTED), a revocation that commits while a
/// prune runs still keeps the credential it names: the prune waits for it
/// (it locks `revocations` in SHARE mode) instead of deleting the
/// credential from under it; and a prune kept waiting longer than its
/// lock timeout gives up (and deletes nothing) rather than queue.
#[tokio::test]
async fn a_revocation_committed_during_a_prune_keeps_its_credential() {
    let Some(base) = attest_gate_tests::postgres_url() else {
        return;
    };
    let (admin, url) = attest_gate_tests::fresh_schema(&base, "prune_race").await;
    let store = Store::open(&url).await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for jti in ["old", "older"] {
        sqlx::query(&format!(
            "INSERT INTO credentials (jti, subject, session_id, parent_jti, workload, jkt, \
             scope, audience, issued_at, expires_at, test_root, model_digest, measurements, \
             depth) VALUES ('{jti}', 's', 'ended-{jti}', NULL, 'w', 'k-{jti}', 'x', 'a', 1, 2, \
             TRUE, '00', '00', 0)"
        ))
        .execute(&pool)
        .await
        .unwrap();
    }
    let revoke = |id: &str, jti: &str| {
        format!(
            "INSERT INTO revocations (id, kind, target, mode, reason, cascade_from, \
             revoked_at, updated_at, lifted) \
             VALUES ('{id}', 'jti', '{jti}', 'immediate', 'test', NULL, 3, 3, FALSE)"
        )
    };
    let kept = |jti: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT COUNT(*) FROM credentials WHERE jti = '{jti}'"
            ))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let store = Arc::new(store);

    // Committed while the prune waits: the prune then sees it.
    let mut revoking = pool.begin().await.unwrap();
    sqlx::query(&revoke("r1", "old"))
        .execute(&mut *revoking)
        .await
        .unwrap();
    let pruning = Arc::clone(&store);
    let prune = tokio::spawn(async move { pruning.prune_credentials(1_000).await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !prune.is_finished(),
        "the prune must wait for the revocation"
    );
    revoking.commit().await.unwrap();
    // Run once the revocation committed: "older", which nothing names,
    // goes and "old" stays. (On a machine slow enough that the prune gave
    // up first, neither goes.) Never "old".
    if let Ok(removed) = prune.await.unwrap() {
        assert_eq!(removed, 1);
        assert_eq!(kept("older").await, 0);
    }
    assert_eq!(kept("old").await, 1);

    // A revocation being written for longer than the lock timeout: the
    // prune gives up and deletes nothing.
    sqlx::query(
        "INSERT INTO credentials (jti, subject, session_id, parent_jti, workload, jkt, \
         scope, audience, issued_at, expires_at, test_root, model_digest, measurements, depth) \
         VALUES ('oldest', 's', 'ended-oldest', NULL, 'w', 'k-oldest', 'x', 'a', 1, 2, TRUE, \
         '00', '00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut revoking = pool.begin().await.unwrap();
    sqlx::query(&revoke("r2", "unrelated"))
        .execute(&mut *revoking)
        .await
        .unwrap();
    let gave_up = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        store.prune_credentials(1_000),
    )
    .await
    .expect("the prune must give up, not wait for the revocation");
    assert!(gave_up.is_err(), "{gave_up:?}");
    assert_eq!(kept("oldest").await, 1);
    revoking.rollback().await.unwrap();

    pool.close().await;
    sqlx::query("DROP SCHEMA prune_race CASCADE")
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn audit_records_past_the_retention_go_behind_a_signed_checkpoint() {
    let server = InProcess::start().await;
    server.attest(600).await;
    server.attest(600).await;
    let before = server.count("SELECT COUNT(*) FROM audit_events").await;
    assert!(before >= 2);

    // Within the retention (one day): nothing goes.
    let now = server.advance(3600);
    server.service.prune(now).await;
    assert_eq!(
        server.count("SELECT COUNT(*) FROM audit_events").await,
        before
    );
    assert!(verify_audit_log(&server.store, &server.data_dir)
        .await
        .unwrap()
        .checkpoint
        .is_none());

    // Past it: every record goes, a checkpoint names the last.
    let later = server.advance(2 * 86_400);
    server.service.prune(later).await;
    assert_eq!(server.count("SELECT COUNT(*) FROM audit_events").await, 0);
    let verified = verify_audit_log(&server.store, &server.data_dir)
        .await
        .unwrap();
    let checkpoint = verified.checkpoint.clone().unwrap();
    assert_eq!(checkpoint.seq, before);
    assert_eq!(verified.records, before);

    // The chain goes on from the checkpoint.
    server.attest(600).await;
    let verified = verify_audit_log(&server.store, &server.data_dir)
        .await
        .unwrap();
    assert_eq!(verified.records, before + 1);
    assert_eq!(verified.checkpoint.unwrap().seq, before);

    // An edited checkpoint is refused: its signature no longer matches.
    server
        .sql("UPDATE audit_checkpoints SET pruned_before = pruned_before + 1")
        .await;
    let refused = verify_audit_log(&server.store, &server.data_dir).await;
    assert!(
        matches!(refused, Err(AuditError::BadCheckpoint(seq)) if seq == before),
        "{refused:?}"
    );
    server
        .sql("UPDATE audit_checkpoints SET pruned_before = pruned_before - 1")
        .await;
    assert!(verify_audit_log(&server.store, &server.data_dir)
        .await
        .is_ok());

    // A checkpoint moved forward to cut the next record out is caught: it
    // no longer names that record's hash, nor is it signed.
    server
        .sql(&format!(
            "UPDATE audit_checkpoints SET seq = {}",
            before + 1
        ))
        .await;
    assert!(verify_audit_log(&server.store, &server.data_dir)
        .await
        .is_err());
    server
        .sql(&format!("UPDATE audit_checkpoints SET seq = {before}"))
        .await;

    // Without the key, the checkpoint cannot be checked: refused.
    std::fs::remove_file(server.data_dir.join("audit-checkpoint.p8")).unwrap();
    let refused = verify_audit_log(&server.store, &server.data_dir).await;
    assert!(matches!(refused, Err(AuditError::NoKey(_))), "{refused:?}");
}

#[tokio::test]
async fn a_broken_chain_is_never_checkpointed() {
    let server = InProcess::start().await;
    server.attest(600).await;
    server.attest(600).await;
    server
        .sql("UPDATE audit_events SET detail = 'edited' WHERE seq = 1")
        .await;
    let later = server.advance(2 * 86_400);
    server.service.prune(later).await;
    // Nothing was removed, and no checkpoint hides the edit.
    assert!(server.count("SELECT COUNT(*) FROM audit_events").await >= 2);
    assert_eq!(
        server.count("SELECT COUNT(*) FROM audit_checkpoints").await,
        0
    );
    assert!(matches!(
        verify_audit_log(&server.store, &server.data_dir).await,
        Err(AuditError::Broken(b)) if b.seq == 1
    ));
}

fn cli(args: &[&str], data_dir: &std::path::Path) -> (i32, Value) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_verifier"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    let printed = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code().unwrap_or(-1), printed)
}

#[tokio::test]
async fn the_cli_prunes_and_verifies_from_the_checkpoint() {
    let server = InProcess::start().await;
    // Decided two hours ago (by the service's clock), pruned up to a minute ago.
    server.advance(-7200);
    server.attest(600).await;
    server.attest(600).await;
    let records = server.count("SELECT COUNT(*) FROM audit_events").await;
    let rfc3339 = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let future = rfc3339(OffsetDateTime::now_utc() + Duration::days(30));
    let (code, _) = cli(&["audit", "prune", "--before", &future], &server.data_dir);
    assert_eq!(code, 2, "a future --before is refused");
    assert_eq!(
        server.count("SELECT COUNT(*) FROM audit_events").await,
        records
    );
    let future = rfc3339(OffsetDateTime::now_utc() - Duration::minutes(1));
    let (code, pruned) = cli(&["audit", "prune", "--before", &future], &server.data_dir);
    assert_eq!(code, 0, "{pruned}");
    assert_eq!(pruned["removed"], records, "{pruned}");
    assert_eq!(pruned["checkpoint"]["seq"], records, "{pruned}");
    let (code, verified) = cli(&["audit", "verify"], &server.data_dir);
    assert_eq!(code, 0, "{verified}");
    assert_eq!(verified["intact"], true, "{verified}");
    assert_eq!(verified["checkpoint"]["seq"], records, "{verified}");
    // A head kept outside the database is checked: still held, or refused.
    let head = format!("{}:{}", records, verified["head"].as_str().unwrap());
    let (code, checked) = cli(&["audit", "verify", "--expect", &head], &server.data_dir);
    assert_eq!(
        (code, &checked["expected_checked"]),
        (0, &json!(1)),
        "{checked}"
    );
    let forged = format!("{records}:{}", "ab".repeat(32));
    let (code, refused) = cli(&["audit", "verify", "--expect", &forged], &server.data_dir);
    assert_eq!(code, 1, "{refused}");
    assert_eq!(refused["intact"], false, "{refused}");
    // Nothing older is left: a second prune removes nothing.
    let (code, again) = cli(&["audit", "prune", "--before", &future], &server.data_dir);
    assert_eq!((code, &again["removed"]), (0, &json!(0)), "{again}");

    server
        .sql("UPDATE audit_checkpoints SET hash = '00' || substr(hash, 3)")
        .await;
    let (code, refused) = cli(&["audit", "verify"], &server.data_dir);
    assert_eq!(code, 1, "{refused}");
    assert_eq!(refused["intact"], false, "{refused}");
}
