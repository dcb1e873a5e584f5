//! The demo's push zone: a zone whose logs arrive by Logpush, next to the pulled ones.
//!
//! Kept apart from the pull flow and as isolated as the rest of the demo: the zone is a
//! demo zone of the demo's own simulator; its job is created with the real domain
//! function (`logpush::create`: destination, secret, the validation upload) and pushes
//! to a receiver this process serves on 127.0.0.1 for the demo's duration only. The
//! simulator's push clock is manual and starts `backfill` minutes ago, so advancing it
//! by the backfill delivers that much history at once (Logpush itself cannot backfill:
//! a real job starts pushing when it is created). The batches then go through the same
//! encrypt → upload stages as the pulled windows, on the demo's private queue. At the
//! end the job is disabled (its destination refuses pushes) and the receiver stops.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rainlogs_archive::catalog::zone;
use rainlogs_archive::endpoint::ZoneEndpoint;
use rainlogs_archive::logpush::{self, NewLogpushJob, UploadLimits};
use rainlogs_dispatcher::app::App;
use rainlogs_logpull_sim::Simulator;
use rainlogs_receiver::{Receiver, ReceiverLimits};
use rainlogs_sealed::kms::Kms;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::demo::{FlowZone, ZoneSummary};

/// The demo job's batch interval: one batch a minute at the demo's volume.
pub const INTERVAL_SECS: u64 = 60;

/// A running push zone: its id, its job, and the receiver serving it.
pub struct PushZone {
    pub zone_id: Uuid,
    pub cf_zone_id: String,
    pub job: i64,
    pub validated: bool,
    receiver: JoinHandle<()>,
}

/// The push zone's outcome.
#[derive(Debug, Clone)]
pub struct PushSummary {
    pub zone: ZoneSummary,
    pub job: i64,
    /// The validation upload reached the demo's receiver.
    pub validated: bool,
    pub batches_delivered: u64,
    pub records_delivered: u64,
    pub batches_dropped: u64,
    /// Records in the batches the receiver acknowledged.
    pub records_acknowledged: u64,
}

impl PushSummary {
    /// Every pushed batch acknowledged once and archived, nothing dropped, chain valid.
    pub fn succeeded(&self) -> bool {
        self.validated
            && self.batches_dropped == 0
            && self.zone.failed == 0
            && self.zone.in_flight == 0
            && self.zone.chain.is_valid()
            && self.zone.archived == self.batches_delivered
            && self.records_acknowledged == self.records_delivered
    }
}

/// Registers the push zone (a demo zone of the demo's simulator `sim`), serves a
/// receiver, creates its Logpush job at the simulator and pushes `backfill_minutes` of
/// history.
pub async fn start(
    app: &App,
    kms: &rainlogs_kms::KmsService,
    tenant: &str,
    z: &FlowZone,
    token: &SecretString,
    sim: &Simulator,
    now: DateTime<Utc>,
) -> anyhow::Result<PushZone> {
    let probe = rainlogs_fetch::LogpullProbe::new(app.logpull.clone(), app.cloudflare.clone());
    let prefix = z.cf_zone_id.get(..8).unwrap_or(&z.cf_zone_id);
    let zone_id = zone::add(
        &app.pool,
        kms,
        &probe,
        &zone::NewZone {
            tenant,
            cf_zone_id: &z.cf_zone_id,
            name: &format!("{prefix}-{}", z.name),
            cadence_seconds: z.cadence_seconds,
            backfill_minutes: z.backfill_minutes,
            endpoint: ZoneEndpoint::Simulator {
                url: sim.base_url(),
            },
            demo: true,
            fields: None,
        },
        token,
        now,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the demo's receiver on 127.0.0.1")?;
    let public_url = format!("http://{}", listener.local_addr()?);
    let shared: Arc<dyn Kms> = Arc::new(kms.clone());
    let receiver = Receiver::new(
        app.pool.clone(),
        app.store.clone(),
        shared,
        ReceiverLimits::default(),
    );
    let serving = tokio::spawn(async move {
        let _ = rainlogs_receiver::serve(listener, receiver).await;
    });
    let new = NewLogpushJob {
        zone: &z.cf_zone_id,
        dataset: "http_requests",
        fields: &z.fields,
        public_url: &public_url,
        limits: UploadLimits {
            max_upload_interval_seconds: Some(INTERVAL_SECS),
            ..UploadLimits::default()
        },
        name: None,
        hybrid: false,
    };
    let created = match logpush::create(&app.pool, kms, &app.cloudflare, &new, "demo").await {
        Ok(c) => c,
        Err(e) => {
            serving.abort();
            return Err(e).context("create the demo zone's Logpush job");
        }
    };
    let push = PushZone {
        zone_id,
        cf_zone_id: z.cf_zone_id.clone(),
        job: created.job.cf_job_id,
        validated: created.job.validated_at.is_some(),
        receiver: serving,
    };
    let history = u64::try_from(z.backfill_minutes.max(0)).unwrap_or(0) * 60;
    sim.logpush()
        .advance(Duration::from_secs(history))
        .map_err(anyhow::Error::msg)?;
    sim.logpush().settled().await;
    Ok(push)
}

impl PushZone {
    /// Disables the job (its destination refuses pushes from now on) and stops the
    /// receiver.
    pub async fn end(self, app: &App, kms: &rainlogs_kms::KmsService) -> anyhow::Result<()> {
        let done = logpush::disable(
            &app.pool,
            kms,
            &app.cloudflare,
            &self.cf_zone_id,
            "http_requests",
            "demo",
        )
        .await;
        self.receiver.abort();
        done.context("disable the demo zone's Logpush job")?;
        Ok(())
    }
}

/// The push zone's summary: windows and chain like the others, plus the simulator's
/// delivery record and what the receiver acknowledged.
pub async fn summarise(
    app: &App,
    sim: &Simulator,
    zone_id: Uuid,
    job: i64,
    validated: bool,
    name: &str,
) -> anyhow::Result<PushSummary> {
    let zone = crate::demo::summarise(app, zone_id, name).await?;
    let stats = u64::try_from(job)
        .ok()
        .and_then(|id| sim.logpush().stats().remove(&id))
        .unwrap_or_default();
    let acknowledged = sqlx::query_scalar!(
        r#"SELECT coalesce(sum(record_count), 0)::bigint AS "n!" FROM push_batches WHERE zone_id = $1"#,
        zone_id
    )
    .fetch_one(&app.pool)
    .await
    .context("count the acknowledged records")?;
    Ok(PushSummary {
        zone,
        job,
        validated,
        batches_delivered: stats.batches_delivered,
        records_delivered: stats.records_delivered,
        batches_dropped: stats.batches_dropped,
        records_acknowledged: u64::try_from(acknowledged).unwrap_or(0),
    })
}
