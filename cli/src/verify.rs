//! `rainlogs verify`: proves the archive is whole and untampered, or names exactly what
//! is not — chain breaks, missing or altered objects, edited catalog rows, pruned windows
//! without receipts, and gaps in coverage (docs/VERIFY.md).
//!
//! The checks themselves live in [`rainlogs_archive::verify`] (the periodic sample task
//! uses them too); this module selects zones, streams findings to a JSON report and a
//! human summary, and turns the outcome into the exit code: 0 clean, 1 findings,
//! 2 verification could not run (Postgres or S3 unreachable, no key for `--deep`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rainlogs_archive::verify::run::{verify, Outcome, Request};
use rainlogs_archive::verify::{Finding, Verifier, VerifyError};
use rainlogs_core::config::{ConfigSource, DatabaseConfig, S3Config};
use rainlogs_core::storage::ObjectStore;
use rainlogs_sealed::kms::{Kms, StaticKms, TenantKey};
use sqlx::PgPool;

/// Exit code when verification found something.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code when verification could not run.
pub const EXIT_OPERATIONAL: u8 = 2;
/// The JSON report's format tag.
pub const REPORT_FORMAT: &str = "rainlogs.verify.v1";

#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Only this tenant's zones (name or id).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this zone (Rainlogs id, Cloudflare zone id or name).
    #[arg(long)]
    pub zone: Option<String>,
    /// Start of the range (RFC 3339); default: the start of each zone's first window.
    #[arg(long)]
    pub from: Option<DateTime<Utc>>,
    /// End of the range (RFC 3339, exclusive); default: 15 minutes ago.
    #[arg(long)]
    pub to: Option<DateTime<Utc>>,
    /// Also decrypt every object: header context, plaintext SHA-256, length, records.
    #[arg(long)]
    pub deep: bool,
    /// Print the JSON report on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Write the JSON report to this file.
    #[arg(long, conflicts_with = "json")]
    pub report: Option<PathBuf>,
    /// Exported tenant key files for --deep and keyed chains instead of the master
    /// keyring (repeatable).
    #[arg(long)]
    pub key_file: Vec<PathBuf>,
    /// Chain key files (from `evidence export --include-chain-key`) to check keyed
    /// chain links and checkpoints with, without the master keyring (repeatable).
    #[arg(long)]
    pub chain_key_file: Vec<PathBuf>,
    /// Objects checked at once.
    #[arg(long, default_value_t = rainlogs_archive::verify::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
}

impl VerifyArgs {
    /// What the arguments ask the archive's verification run for.
    pub fn request(&self) -> Request {
        Request {
            tenant: self.tenant.clone(),
            zone: self.zone.clone(),
            from: self.from,
            to: self.to,
            deep: self.deep,
        }
    }
}

/// The kms for `--deep`: key files when given, else the master keyring if configured.
pub async fn kms_for(
    src: &ConfigSource,
    pool: &PgPool,
    key_files: &[PathBuf],
    what: &str,
) -> anyhow::Result<Option<Arc<dyn Kms>>> {
    kms_with_chain_keys(src, pool, key_files, &[], what).await
}

/// [`kms_for`] with chain key files too (a kms of key files only, when any is given).
pub async fn kms_with_chain_keys(
    src: &ConfigSource,
    pool: &PgPool,
    key_files: &[PathBuf],
    chain_key_files: &[PathBuf],
    what: &str,
) -> anyhow::Result<Option<Arc<dyn Kms>>> {
    if !key_files.is_empty() || !chain_key_files.is_empty() {
        let mut kms = static_kms(key_files)?;
        for path in chain_key_files {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("read chain key file {}", path.display()))?,
            );
            kms = kms.with_chain_key(
                rainlogs_sealed::kms::ChainKey::from_key_file(&text)
                    .with_context(|| format!("chain key file {}", path.display()))?,
            );
        }
        return Ok(Some(Arc::new(kms)));
    }
    if rainlogs_kms::MasterKeyring::configured(src) {
        let keyring = rainlogs_kms::MasterKeyring::from_source(src)?;
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        return Ok(Some(Arc::new(rainlogs_kms::KmsService::new(
            pool.clone(),
            keyring,
            format!("cli:{user}:{what}"),
        ))));
    }
    Ok(None)
}

/// A kms over exported tenant key files; errors name the file, never its content.
pub fn static_kms(key_files: &[PathBuf]) -> anyhow::Result<StaticKms> {
    let mut kms = StaticKms::new();
    for path in key_files {
        kms = kms.with_key(read_key_file(path)?);
    }
    Ok(kms)
}

/// Reads one exported tenant key file.
pub fn read_key_file(path: &std::path::Path) -> anyhow::Result<TenantKey> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("read key file {}", path.display()))?,
    );
    TenantKey::from_key_file(&text).with_context(|| format!("key file {}", path.display()))
}

/// Streams the JSON report: header, findings as they come, summary at the end.
struct JsonReport {
    out: Box<dyn Write + Send>,
    first: bool,
}

impl JsonReport {
    fn start(
        mut out: Box<dyn Write + Send>,
        args: &VerifyArgs,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let head = serde_json::json!({
            "format": REPORT_FORMAT,
            "started_at": now,
            "deep": args.deep,
            "scope": {
                "tenant": args.tenant, "zone": args.zone, "from": args.from, "to": args.to,
            },
        });
        let head = serde_json::to_string(&head)?;
        // Reopen the object to append the streamed members.
        write!(out, "{},\"findings\":[", &head[..head.len() - 1]).context("write report")?;
        Ok(Self { out, first: true })
    }

    fn finding(&mut self, f: &Finding) -> std::io::Result<()> {
        let sep = if self.first { "\n" } else { ",\n" };
        self.first = false;
        let text = serde_json::to_string(f).map_err(std::io::Error::other)?;
        write!(self.out, "{sep}{text}")
    }

    fn finish(mut self, outcome: &Outcome, error: Option<String>) -> anyhow::Result<()> {
        let result = match (&error, outcome.clean()) {
            (Some(_), _) => "error",
            (None, true) => "clean",
            (None, false) => "findings",
        };
        let tail = serde_json::json!({
            "zones": outcome.zones,
            "counts": outcome.counts,
            "finished_at": Utc::now(),
            "result": result,
            "error": error,
        });
        let tail = serde_json::to_string(&tail)?;
        write!(self.out, "\n],{}\n", &tail[1..]).context("write report")?;
        self.out.flush().context("write report")?;
        Ok(())
    }
}

fn print_summary(human: &mut dyn Write, outcome: &Outcome, deep: bool) -> std::io::Result<()> {
    for z in &outcome.zones {
        let c = &z.counts;
        writeln!(
            human,
            "zone {} {}: {} .. {}: {} links, {} windows ({} archived, {} empty, {} pruned), {} objects checked{}: {}",
            z.name,
            z.zone_id,
            z.from.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            z.to.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            c.links,
            c.windows,
            c.archived,
            c.empty,
            c.pruned,
            c.objects_checked,
            if deep { " (deep)" } else { "" },
            if c.findings == 0 { "ok".to_owned() } else { format!("{} FINDINGS", c.findings) },
        )?;
    }
    let c = &outcome.counts;
    writeln!(
        human,
        "verify: {} zones, {} links, {} windows, {} objects ({} bytes) checked: {}",
        c.zones,
        c.links,
        c.windows,
        c.objects_checked,
        c.object_bytes,
        if outcome.clean() {
            "clean".to_owned()
        } else {
            format!("{} findings", c.findings)
        }
    )
}

/// `rainlogs verify`: exit 0 clean, 1 findings, 2 could not verify.
pub async fn run(src: &ConfigSource, args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let mut human: Box<dyn Write + Send> = if args.json {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let report_out: Option<Box<dyn Write + Send>> = if args.json {
        Some(Box::new(std::io::BufWriter::new(std::io::stdout())))
    } else if let Some(path) = &args.report {
        let file = std::fs::File::create(path)
            .with_context(|| format!("create report {}", path.display()))?;
        Some(Box::new(std::io::BufWriter::new(file)))
    } else {
        None
    };
    let mut report = match report_out {
        Some(out) => Some(JsonReport::start(out, args, now)?),
        None => None,
    };
    let result = async {
        let pool = rainlogs_core::db::connect(&DatabaseConfig::from_source(src)?).await?;
        let store = ObjectStore::connect(&S3Config::from_source(src)?).await;
        // Keyed chains need chain keys even without --deep (docs/CHAIN.md §Keys).
        let kms =
            kms_with_chain_keys(src, &pool, &args.key_file, &args.chain_key_file, "verify").await?;
        let verifier = Verifier {
            pool,
            store,
            kms,
            concurrency: args.concurrency,
        };
        let human = &mut human;
        let report = &mut report;
        verify(&verifier, &args.request(), now, &mut |f| {
            let line = writeln!(human, "FINDING {}: {f}", f.kind());
            let json = match report.as_mut() {
                Some(r) => r.finding(&f),
                None => Ok(()),
            };
            line.and(json).map_err(|e| {
                VerifyError::Operational(rainlogs_core::TaskError::retryable(
                    "verify.output",
                    format!("write findings: {e}"),
                ))
            })
        })
        .await
        .map_err(anyhow::Error::from)
    }
    .await;
    match result {
        Ok(outcome) => {
            print_summary(&mut human, &outcome, args.deep).context("write summary")?;
            if let Some(r) = report {
                r.finish(&outcome, None)?;
            }
            Ok(if outcome.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FINDINGS)
            })
        }
        Err(e) => {
            let message = format!("{e:#}");
            if let Some(r) = report {
                let _ = r.finish(&Outcome::default(), Some(message.clone()));
            }
            let _ = writeln!(human, "verify could not complete: {message}");
            eprintln!("error: {message}");
            Ok(ExitCode::from(EXIT_OPERATIONAL))
        }
    }
}
