//! `rainlogs logpush create|list|status|disable|delete`: parses, calls
//! `rainlogs_archive::logpush`, prints. Jobs are created through Cloudflare's jobs API
//! with the zone's stored token, sent only to the zone's endpoint (the allow-listed
//! Cloudflare API, or the zone's simulator). The destination's secret goes to Cloudflare
//! inside the job's destination and is never printed (docs/INGEST.md "Operators").

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use rainlogs_archive::endpoint::CloudflareApi;
use rainlogs_archive::logpush::{self, LogpushJob, NewLogpushJob, UploadLimits};
use rainlogs_core::config::{ConfigSource, DatabaseConfig};

#[derive(Debug, clap::Subcommand)]
pub enum LogpushCommand {
    /// Create the zone's Logpush job for a dataset at Cloudflare: a new destination and
    /// secret, the job pushing to PUBLIC-URL/push/{destination} with the secret as its
    /// Authorization header (Cloudflare validates it before the job exists). A zone in
    /// pull mode is switched to push (or hybrid with --hybrid).
    Create {
        /// The zone (Cloudflare zone id, Rainlogs id or name).
        #[arg(long)]
        zone: String,
        /// The dataset: http_requests, firewall_events, dns_logs, ...
        #[arg(long)]
        dataset: String,
        /// Fields to push, comma-separated (default for http_requests: Logpull's
        /// defaults; EdgeStartTimestamp, EdgeEndTimestamp and RayID are always added).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// Where Cloudflare reaches this Rainlogs' receiver (https://...; plain http only
        /// for a simulated zone).
        #[arg(long, value_name = "URL", required_unless_present = "s3_landing")]
        public_url: Option<String>,
        /// Have Cloudflare write objects into the landing bucket (RAINLOGS_LANDING_BUCKET)
        /// instead of pushing to the receiver: an S3-compatible destination
        /// s3://BUCKET/{destination}/{DATE}, emptied by the ingest.landing stage.
        #[arg(long, conflicts_with = "public_url")]
        s3_landing: bool,
        /// The write-only key Cloudflare writes with (default
        /// RAINLOGS_LANDING_WRITER_KEY_ID); never Rainlogs' own key.
        #[arg(long, value_name = "KEY_ID", requires = "s3_landing")]
        s3_key_id: Option<String>,
        /// The variable holding that key's secret (it is never an argument, never
        /// printed, never stored).
        #[arg(long, value_name = "VAR", default_value = logpush::WRITER_SECRET_VAR)]
        s3_secret_env: String,
        /// Where Cloudflare reaches the landing bucket (default RAINLOGS_LANDING_ENDPOINT,
        /// else RAINLOGS_S3_ENDPOINT).
        #[arg(long, value_name = "URL", requires = "s3_landing")]
        s3_endpoint: Option<String>,
        /// Largest batch, bytes of uncompressed NDJSON (5000000-1000000000).
        #[arg(long)]
        max_upload_bytes: Option<u64>,
        /// Most records a batch (1000-1000000).
        #[arg(long)]
        max_upload_records: Option<u64>,
        /// Longest wait before a batch is sent, seconds (30-300).
        #[arg(long)]
        max_upload_interval_seconds: Option<u64>,
        /// Job name at Cloudflare (default rainlogs-DATASET).
        #[arg(long)]
        name: Option<String>,
        /// Switch the zone to hybrid (Logpull repairs push gaps; Enterprise zones)
        /// instead of push.
        #[arg(long)]
        hybrid: bool,
    },
    /// List the Logpush jobs Rainlogs manages, with their status as last polled.
    List {
        #[arg(long)]
        zone: Option<String>,
        /// Include deleted jobs.
        #[arg(long)]
        all: bool,
    },
    /// Poll the jobs at Cloudflare and record every change of their status
    /// (exit 0: all polled and delivering; 1: a job is failing, gone or not polled).
    Status {
        #[arg(long)]
        zone: Option<String>,
        #[arg(long)]
        dataset: Option<String>,
        /// Also print each job's recorded status changes.
        #[arg(long)]
        history: bool,
    },
    /// List landing objects that could not be ingested (not gzip, over a limit): each
    /// was moved to rejected/KEY in the landing bucket (exit 1 when there is one).
    Rejects {
        #[arg(long)]
        zone: Option<String>,
    },
    /// Switch the zone's job for a dataset off at Cloudflare, then refuse its destination.
    Disable {
        #[arg(long)]
        zone: String,
        #[arg(long)]
        dataset: String,
    },
    /// Delete the zone's job for a dataset at Cloudflare, then refuse its destination
    /// (its record and status history stay).
    Delete {
        #[arg(long)]
        zone: String,
        #[arg(long)]
        dataset: String,
    },
}

const FMT: &str = "%Y-%m-%dT%H:%M:%SZ";

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format(FMT).to_string())
        .unwrap_or_else(|| "never".into())
}

fn state(job: &LogpushJob) -> &'static str {
    if job.deleted_at.is_some() {
        "deleted"
    } else if job.error_message.is_some() {
        "FAILING"
    } else if job.enabled {
        "enabled"
    } else {
        "disabled"
    }
}

fn line(job: &LogpushJob) -> String {
    let mut out = format!(
        "job {}  {} ({})  {}  {}  last complete {}  last batch {}",
        job.cf_job_id,
        job.zone_name,
        job.cf_zone_id,
        job.dataset,
        state(job),
        when(job.last_complete),
        when(job.last_batch_at),
    );
    if let Some(message) = &job.error_message {
        out.push_str(&format!(
            "\n  error since {}: {message}",
            when(job.last_error)
        ));
    }
    out
}

pub(crate) async fn run(src: &ConfigSource, cmd: LogpushCommand) -> anyhow::Result<ExitCode> {
    let pool = rainlogs_core::db::connect(&DatabaseConfig::from_source(src)?).await?;
    let actor = super::cli_actor("logpush");
    match cmd {
        LogpushCommand::Create {
            zone,
            dataset,
            fields,
            public_url,
            s3_landing,
            s3_key_id,
            s3_secret_env,
            s3_endpoint,
            max_upload_bytes,
            max_upload_records,
            max_upload_interval_seconds,
            name,
            hybrid,
        } => {
            let landing = if s3_landing {
                Some(logpush::S3Landing::from_source(
                    src,
                    s3_key_id.as_deref(),
                    &s3_secret_env,
                    s3_endpoint.as_deref(),
                )?)
            } else {
                None
            };
            let kms = rainlogs_kms::KmsService::from_config(pool.clone(), src, &actor)?;
            let cloudflare = CloudflareApi::from_source(src)?;
            let public_url = public_url.unwrap_or_default();
            let new = NewLogpushJob {
                zone: &zone,
                dataset: &dataset,
                fields: &fields,
                public_url: &public_url,
                limits: UploadLimits {
                    max_upload_bytes,
                    max_upload_records,
                    max_upload_interval_seconds,
                },
                name: name.as_deref(),
                hybrid,
            };
            let c = match &landing {
                Some(landing) => {
                    logpush::create_s3(&pool, &kms, &cloudflare, &new, landing, &actor).await?
                }
                None => logpush::create(&pool, &kms, &cloudflare, &new, &actor).await?,
            };
            let j = &c.job;
            println!(
                "logpush job {} created for {} ({}), dataset {}: {}",
                j.cf_job_id,
                j.zone_name,
                j.cf_zone_id,
                j.dataset,
                if j.enabled { "enabled" } else { "disabled" }
            );
            let renewed = if c.renewed_destination {
                "reused with a new secret"
            } else {
                "new"
            };
            if landing.is_some() {
                println!(
                    "  destination {} writes to {} ({renewed}; the write key's secret went to Cloudflare only)",
                    j.destination_id, j.public_url
                );
                println!(
                    "  Cloudflare's validation object and batches are ingested and deleted by the                      scheduler's ingest.landing pass (rainlogs run)"
                );
            } else {
                println!(
                    "  destination {} at {}/push/{} ({renewed}; its secret went to Cloudflare only)",
                    j.destination_id, j.public_url, j.destination_id
                );
            }
            match j.validated_at {
                _ if landing.is_some() => {}
                Some(t) => println!("  validation upload received at {}", t.format(FMT)),
                None => println!(
                    "  WARNING: Cloudflare validated the destination, but not at this Rainlogs' \
                     receiver (push_destinations.validated_at is empty): check that --public-url \
                     reaches the receiver that uses this database"
                ),
            }
            // Every offered field is the default: name the count, not 69 names.
            let fields = match j.fields.as_slice() {
                [first, .., last] if j.fields.len() > 12 => {
                    format!("{first},…,{last} ({})", j.fields.len())
                }
                all => all.join(","),
            };
            println!(
                "  fields {fields}; timestamps {}",
                logpush::TIMESTAMP_FORMAT
            );
            if let Some((from, to)) = c.mode_change {
                println!(
                    "  zone mode {from} -> {to}: no new Logpull windows are planned for it{}",
                    if to == rainlogs_archive::catalog::zone::ZoneMode::Hybrid {
                        " (Logpull repairs push gaps)"
                    } else {
                        ""
                    }
                );
            }
        }
        LogpushCommand::Rejects { zone } => {
            let zone_id = match &zone {
                Some(z) => Some(rainlogs_archive::catalog::zone::resolve(&pool, z).await?),
                None => None,
            };
            let rejects = rainlogs_archive::landing::rejects(&pool, zone_id).await?;
            if rejects.is_empty() {
                println!("no rejected landing objects");
                return Ok(ExitCode::SUCCESS);
            }
            for r in &rejects {
                println!(
                    "{}  destination {}  {} ({} bytes, landed {}) moved to {}: {}: {}",
                    r.rejected_at.format(FMT),
                    r.destination_id,
                    r.landing_key,
                    r.size_bytes,
                    when(r.landed_at),
                    r.rejected_key,
                    r.code,
                    r.reason
                );
            }
            return Ok(ExitCode::from(1));
        }
        LogpushCommand::List { zone, all } => {
            let jobs = logpush::list(&pool, zone.as_deref(), None, all).await?;
            if jobs.is_empty() {
                println!("no Logpush jobs");
            }
            for j in &jobs {
                println!("{}", line(j));
            }
        }
        LogpushCommand::Status {
            zone,
            dataset,
            history,
        } => {
            let kms = rainlogs_kms::KmsService::from_config(pool.clone(), src, &actor)?;
            let cloudflare = CloudflareApi::from_source(src)?;
            let polled = logpush::status(
                &pool,
                &kms,
                &cloudflare,
                zone.as_deref(),
                dataset.as_deref(),
            )
            .await?;
            if polled.is_empty() {
                println!("no Logpush jobs");
            }
            let mut healthy = true;
            for (job, outcome) in &polled {
                match outcome {
                    Ok(p) => {
                        healthy &= p.job.enabled && p.job.error_message.is_none();
                        println!(
                            "{}{}",
                            line(&p.job),
                            if p.changed {
                                "\n  (changed since the last poll)"
                            } else {
                                ""
                            }
                        );
                    }
                    Err(e) => {
                        healthy = false;
                        println!("{}\n  could not poll: {e}", line(job));
                    }
                }
                if history {
                    for c in logpush::history(&pool, job.id).await? {
                        println!(
                            "    {}  {}  last complete {}{}",
                            c.observed_at.format(FMT),
                            if c.gone {
                                "gone"
                            } else if c.enabled {
                                "enabled"
                            } else {
                                "disabled"
                            },
                            when(c.last_complete),
                            c.error_message
                                .map(|m| format!("  error ({}): {m}", when(c.last_error)))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            if !healthy {
                return Ok(ExitCode::FAILURE);
            }
        }
        LogpushCommand::Disable { zone, dataset } => {
            let kms = rainlogs_kms::KmsService::from_config(pool.clone(), src, &actor)?;
            let cloudflare = CloudflareApi::from_source(src)?;
            let j = logpush::disable(&pool, &kms, &cloudflare, &zone, &dataset, &actor).await?;
            println!(
                "logpush job {} of {} ({}) disabled at Cloudflare; destination {} refuses pushes",
                j.cf_job_id, j.zone_name, j.dataset, j.destination_id
            );
        }
        LogpushCommand::Delete { zone, dataset } => {
            let kms = rainlogs_kms::KmsService::from_config(pool.clone(), src, &actor)?;
            let cloudflare = CloudflareApi::from_source(src)?;
            let j = logpush::delete(&pool, &kms, &cloudflare, &zone, &dataset, &actor).await?;
            println!(
                "logpush job {} of {} ({}) deleted at Cloudflare; destination {} refuses pushes \
                 (the zone's mode is unchanged: rainlogs zone mode {} pull to pull again)",
                j.cf_job_id, j.zone_name, j.dataset, j.destination_id, j.cf_zone_id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
