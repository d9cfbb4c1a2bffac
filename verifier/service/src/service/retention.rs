//! What the store forgets, and when: consumed nonces and proof `jti`s after
//! their window, a session's evidence, encryption key and collateral files
//! once the session (and so every token delegated from it, which cannot
//! outlive it) has expired; credentials no revocation names past
//! `--credential-retention`; audit records past `--audit-retention`, behind
//! a signed checkpoint. Run once a minute by `verifier serve`.

use time::OffsetDateTime;

use super::Service;
use crate::audit_checkpoint;

/// How long past expiry a consumed nonce, a session's evidence and a
/// collateral file are kept: longer than a request may take plus clock skew
/// between replicas, so a request in flight across an expiry never finds
/// its nonce forgotten.
const PRUNE_GRACE_SECONDS: i64 = 600;

impl Service {
    /// Forgets what expired before `now` less the grace period, then counts
    /// what is left for the `store_rows` metric. Failures are logged: the
    /// next round tries again, and nothing depends on a prune having run.
    pub async fn prune(&self, now: OffsetDateTime) {
        let horizon = now.unix_timestamp() - PRUNE_GRACE_SECONDS;
        let store = self.store();
        let results = [
            ("consumed nonces", store.prune_nonces(horizon).await),
            (
                "ended sessions' evidence",
                store.prune_session_evidence(horizon).await,
            ),
            (
                "ended sessions' encryption keys",
                store.prune_session_keys(horizon).await,
            ),
            (
                "unused collateral files",
                store.prune_collateral_files(horizon).await,
            ),
        ];
        let credentials = match self.config.credential_retention {
            Some(retention) => Some((
                "expired credentials",
                store
                    .prune_credentials((now - retention).unix_timestamp().min(horizon))
                    .await,
            )),
            None => None,
        };
        for (what, result) in results.into_iter().chain(credentials) {
            match result {
                Ok(0) => {}
                Ok(n) => tracing::debug!(rows = n, "pruned {what}"),
                Err(e) => tracing::warn!(error = %e, "pruning {what} failed"),
            }
        }
        if let (Some(retention), Some(key)) = (self.config.audit_retention, &self.checkpoint_key) {
            let before = (now - retention).unix_timestamp();
            match audit_checkpoint::prune_audit_log(
                store,
                key,
                &self.config.data_dir,
                before,
                now.unix_timestamp(),
            )
            .await
            {
                Ok(pruned) if pruned.removed > 0 => {
                    tracing::info!(
                        removed = pruned.removed,
                        "pruned audit records past the retention"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "pruning the audit log failed"),
            }
        }
        match store.table_rows().await {
            Ok(counts) => {
                for (table, rows) in counts {
                    self.metrics.table_rows(table, rows);
                }
            }
            Err(e) => tracing::warn!(error = %e, "counting the store's rows failed"),
        }
    }
}
