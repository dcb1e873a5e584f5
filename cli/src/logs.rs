//! `rainlogs logs get`: restore a zone's logs for a time range as NDJSON, verified.
//!
//! Windows come out ordered by start; inside a window, records keep the order the object
//! stores them in (the order Logpull served them). Windows wholly inside `[from, to)` are
//! copied as stored; in a window that straddles an edge each record is kept when its
//! `EdgeEndTimestamp` (else `EdgeStartTimestamp`; integer seconds, milliseconds,
//! microseconds or nanoseconds, or an RFC 3339 string) lies in `[from, to)` — the field
//! Logpull selects windows by — and a record without a readable timestamp is kept (and
//! counted) rather than dropped. `--filter field=value` keeps records whose top-level or
//! dotted nested field equals the value (repeatable, all must match).
//!
//! Nothing unverified is emitted: each window's output is held (up to `--max-window-mib`)
//! until its object has been read to the end and checked — SHA-256 and size against the
//! catalog, header context (tenant, zone, window), every AEAD chunk, the trailer, and the
//! plaintext SHA-256 and record count against the catalog. A bigger window is verified
//! in a first pass and streamed in a second one, whose hash is checked again. A failure
//! stops the restore with an error naming the object; `--out` is written to a temporary
//! file renamed into place only on success.
//!
//! Without Postgres (`--key-file`, disaster recovery) the windows come from listing
//! `archive/{tenant}/{zone}/{yyyy}/{mm}/{dd}/` and their keys; the object's own header and
//! trailer are what is verified, since no catalog hash exists to compare with.
//!
//! The engine is `rainlogs_archive::restore`; this module parses the arguments, picks
//! the source (catalog, or bucket + exported keys), writes `--out` atomically and
//! shows progress and warnings on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rainlogs_archive::restore::{restore, Filter, Observer, Request, RestoreError, Source, Stats};
use rainlogs_core::config::{ConfigSource, DatabaseConfig, S3Config};
use rainlogs_core::storage::ObjectStore;
use uuid::Uuid;

pub use rainlogs_archive::restore::{EXIT_OTHER, EXIT_VERIFICATION};

/// How many gap warnings are printed before they are only counted.
const MAX_WARNINGS: u64 = 50;

#[derive(Debug, clap::Subcommand)]
pub enum LogsCommand {
    /// Restore a zone's logs for [--from, --to) as NDJSON, verifying every object.
    Get(GetArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    /// The zone: Rainlogs id; with Postgres also its Cloudflare zone id or name.
    #[arg(long)]
    pub zone: String,
    /// Start (RFC 3339, inclusive).
    #[arg(long)]
    pub from: DateTime<Utc>,
    /// End (RFC 3339, exclusive).
    #[arg(long)]
    pub to: DateTime<Utc>,
    /// Keep records whose field equals the value; dotted names reach nested fields.
    /// Repeatable: all must match (with --match-any: one is enough).
    #[arg(long = "filter", value_name = "FIELD=VALUE")]
    pub filters: Vec<String>,
    /// Keep records matching any one of the --filter's (a data subject's IP or cookie).
    #[arg(long)]
    pub match_any: bool,
    /// Write to this file (atomically: temporary file, then rename) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Tenant id (required with --key-file; with Postgres, checked against the zone).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Disaster recovery: restore without Postgres from the bucket and these exported
    /// tenant key files (`rainlogs kms export-tenant-key`, one per key version).
    #[arg(long)]
    pub key_file: Vec<PathBuf>,
    /// Largest window output held in memory until its object is verified; larger
    /// windows are verified in a first pass and streamed in a second.
    #[arg(long, default_value_t = 256)]
    pub max_window_mib: u64,
    /// The dataset: `http_requests` (pulled and pushed), or another dataset a Logpush
    /// job delivers (`firewall_events`, `dns_logs`, …).
    #[arg(long, default_value = rainlogs_archive::verify::PULL_DATASET)]
    pub dataset: String,
}

/// An observer that prints warnings to stderr, at most [`MAX_WARNINGS`] of them.
pub struct StderrObserver {
    printed: u64,
    bar: Option<indicatif::ProgressBar>,
}

impl StderrObserver {
    /// With a progress spinner (bytes written, rate) when stderr is a terminal.
    pub fn new() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bytes} of NDJSON ({bytes_per_sec}) {msg}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self { printed: 0, bar }
    }
}

impl Default for StderrObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer for StderrObserver {
    fn warn(&mut self, message: &str) {
        self.printed += 1;
        if self.printed <= MAX_WARNINGS {
            match &self.bar {
                Some(bar) => bar.println(format!("warning: {message}")),
                None => eprintln!("warning: {message}"),
            }
        } else if self.printed == MAX_WARNINGS + 1 {
            eprintln!("warning: further gaps are only counted");
        }
    }

    fn progress(&mut self, stats: &Stats) {
        if let Some(bar) = &self.bar {
            bar.set_position(stats.bytes_out);
            bar.set_message(format!(
                "{} windows, {} records out",
                stats.windows_restored, stats.records_out
            ));
        }
    }
}

impl Drop for StderrObserver {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Output to `path` through a temporary file in the same directory, renamed into place
/// only when [`AtomicFile::commit`] is called; dropped uncommitted, it is removed.
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    pub fn create(path: &Path) -> anyhow::Result<(Self, Box<dyn Write + Send>)> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // tempfile creates it 0600: restored logs are plaintext.
        let tmp = tempfile::Builder::new()
            .prefix(".rainlogs-restore-")
            .tempfile_in(&dir)
            .with_context(|| format!("create a temporary file in {}", dir.display()))?;
        let file = tmp
            .as_file()
            .try_clone()
            .context("open the temporary output file")?;
        Ok((
            Self {
                tmp,
                path: path.to_path_buf(),
            },
            Box::new(std::io::BufWriter::with_capacity(1 << 20, file)),
        ))
    }

    pub fn commit(self) -> anyhow::Result<()> {
        self.tmp
            .as_file()
            .sync_all()
            .context("sync the output file")?;
        self.tmp
            .persist(&self.path)
            .map_err(|e| e.error)
            .with_context(|| format!("rename the output into {}", self.path.display()))?;
        Ok(())
    }
}

/// The source `args` ask for: the catalog, or (with `--key-file`) the bucket alone.
pub async fn source_for(src: &ConfigSource, args: &GetArgs) -> Result<Source, RestoreError> {
    let s3 = S3Config::from_source(src).map_err(RestoreError::operational)?;
    let store = ObjectStore::connect(&s3).await;
    if !args.key_file.is_empty() {
        let tenant = args.tenant.as_deref().ok_or_else(|| {
            RestoreError::Input("--key-file (restore without Postgres) needs --tenant ID".into())
        })?;
        let tenant = Uuid::parse_str(tenant).map_err(|_| {
            RestoreError::Input(format!(
                "--tenant {tenant:?}: without Postgres give the tenant's id (a UUID)"
            ))
        })?;
        let mut kms = rainlogs_sealed::kms::StaticKms::new();
        for path in &args.key_file {
            let key = super::verify::read_key_file(path)
                .map_err(|e| RestoreError::Input(format!("{e:#}")))?;
            if key.tenant != tenant {
                return Err(RestoreError::Input(format!(
                    "key file {} holds a key of tenant {}, not of --tenant {tenant}",
                    path.display(),
                    key.tenant
                )));
            }
            kms = kms.with_key(key);
        }
        return Ok(Source::Bucket {
            store,
            kms: Arc::new(kms),
            tenant,
        });
    }
    let db = DatabaseConfig::from_source(src).map_err(RestoreError::operational)?;
    let pool = rainlogs_core::db::connect(&db)
        .await
        .map_err(RestoreError::operational)?;
    let kms = super::verify::kms_for(src, &pool, &[], "logs-get")
        .await
        .map_err(|e| RestoreError::Input(format!("{e:#}")))?
        .ok_or_else(|| {
            RestoreError::Input(
                "restoring needs the master keyring (RAINLOGS_MASTER_KEYS_FILE) or, without Postgres, --key-file and --tenant".into(),
            )
        })?;
    Ok(Source::Catalog { pool, store, kms })
}

/// `rainlogs logs get`.
pub async fn run(src: &ConfigSource, cmd: LogsCommand) -> anyhow::Result<ExitCode> {
    let LogsCommand::Get(args) = cmd;
    match get(src, &args).await {
        Ok(stats) => {
            eprintln!(
                "restored zone {}: {} windows ({} empty), {} of {} records, {} bytes of NDJSON{}{}{}{}",
                stats.zone_id,
                stats.windows_restored,
                stats.windows_empty,
                stats.records_out,
                stats.records_read,
                stats.bytes_out,
                if stats.gaps > 0 {
                    format!("; {} gaps (see warnings)", stats.gaps)
                } else {
                    String::new()
                },
                if stats.malformed_lines > 0 {
                    format!(
                        "; {} quarantined lines that are not JSON records (kept when trimming, skipped by --filter)",
                        stats.malformed_lines
                    )
                } else {
                    String::new()
                },
                if stats.untimed_records > 0 {
                    format!(
                        "; {} records kept without a readable timestamp",
                        stats.untimed_records
                    )
                } else {
                    String::new()
                },
                if stats.late_unsettled {
                    "; late records may still come (see warnings)"
                } else {
                    ""
                },
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            if args.out.is_none() && matches!(e, RestoreError::Verification { .. }) {
                eprintln!("error: windows written before this one were verified; nothing of the failing object was written");
            }
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

/// Parses the arguments, restores, and commits `--out`.
pub async fn get(src: &ConfigSource, args: &GetArgs) -> Result<Stats, RestoreError> {
    let filters = args
        .filters
        .iter()
        .map(|f| f.parse())
        .collect::<Result<Vec<Filter>, _>>()?;
    let req = Request {
        zone: args.zone.clone(),
        tenant: args.tenant.clone(),
        from: args.from,
        to: args.to,
        filters,
        match_any: args.match_any,
        max_window_bytes: usize::try_from(args.max_window_mib.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX),
        dataset: args.dataset.clone(),
    };

    let source = source_for(src, args).await?;
    let (atomic, out): (Option<AtomicFile>, Box<dyn Write + Send>) = match &args.out {
        Some(path) => {
            let (a, w) = AtomicFile::create(path)
                .map_err(|e| RestoreError::Operational(format!("{e:#}")))?;
            (Some(a), w)
        }
        None => (
            None,
            Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout(),
            )),
        ),
    };
    let mut observer = StderrObserver::new();
    let result = restore(&source, &req, out, &mut observer).await;
    // Reads of log content are audited, from every front end (offline restores have
    // no catalog to write to).
    if let Source::Catalog { pool, .. } = &source {
        if let Ok(z) = rainlogs_archive::catalog::zone::get(pool, &args.zone).await {
            let asked = serde_json::json!({"from": args.from, "to": args.to,
                "filter": args.filters, "match_any": args.match_any, "dataset": args.dataset});
            let outcome = result.as_ref().map(|(_, stats)| stats);
            rainlogs_archive::restore::record_read(
                pool,
                &super::cli_actor("logs-get"),
                Some(z.tenant_id),
                z.id,
                asked,
                outcome,
            )
            .await
            .map_err(RestoreError::operational)?;
        }
    }
    let (out, stats) = result?;
    drop(out);
    if let Some(a) = atomic {
        a.commit()
            .map_err(|e| RestoreError::Operational(format!("{e:#}")))?;
    }
    Ok(stats)
}
