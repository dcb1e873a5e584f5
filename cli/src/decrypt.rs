//! `rainlogs decrypt FILE`: opens a sealed object offline and writes its NDJSON to
//! stdout, verifying every chunk and the trailer (docs/FORMAT.md). Keys come from an
//! exported tenant key file, or from the master keyring and Postgres.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rainlogs_core::config::ConfigSource;
use rainlogs_sealed::kms::TenantKey;
use rainlogs_sealed::{OpenSummary, Opener, SealError, SealedHeader};
use uuid::Uuid;

#[derive(Debug, Clone, clap::Args)]
pub struct DecryptArgs {
    /// The sealed object (`-` for stdin).
    pub file: PathBuf,
    /// An exported tenant key file (`rainlogs kms export-tenant-key`); without it the
    /// master keyring (RAINLOGS_MASTER_KEYS) and Postgres are used.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Refuse the object unless it belongs to this tenant.
    #[arg(long)]
    pub tenant: Option<Uuid>,
    /// Refuse the object unless it belongs to this zone.
    #[arg(long)]
    pub zone: Option<Uuid>,
    /// Refuse the object unless its window starts at this instant (RFC 3339).
    #[arg(long)]
    pub window_start: Option<DateTime<Utc>>,
    /// Refuse the object unless its window ends at this instant (RFC 3339).
    #[arg(long)]
    pub window_end: Option<DateTime<Utc>>,
}

impl DecryptArgs {
    /// The expected context: the header's, with every given field imposed.
    fn check(&self, header: &SealedHeader) -> Result<(), SealError> {
        let mut expected = header.context;
        expected.tenant = self.tenant.unwrap_or(expected.tenant);
        expected.zone = self.zone.unwrap_or(expected.zone);
        expected.window_start = self.window_start.unwrap_or(expected.window_start);
        expected.window_end = self.window_end.unwrap_or(expected.window_end);
        header.check_context(&expected)
    }
}

/// Opens `args.file` and writes its plaintext to `out`.
pub async fn decrypt_to(
    src: &ConfigSource,
    args: &DecryptArgs,
    out: &mut dyn Write,
) -> anyhow::Result<OpenSummary> {
    let mut reader: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            File::open(&args.file).with_context(|| format!("open {}", args.file.display()))?,
        ))
    };
    let header = SealedHeader::read_from(&mut reader)?;
    args.check(&header)?;
    let (tenant, version) = (header.context.tenant, header.tenant_key_version);
    let data_key = match &args.key_file {
        Some(path) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("read key file {}", path.display()))?,
            );
            let key = TenantKey::from_key_file(&text)?;
            if key.tenant != tenant || key.version != version {
                return Err(
                    SealError::Key(rainlogs_sealed::kms::KeyError::KeyFileMismatch {
                        tenant,
                        version,
                        file_tenant: key.tenant,
                        file_version: key.version,
                    })
                    .into(),
                );
            }
            key.unwrap_data_key(&header.context, &header.wrapped_key)
                .map_err(SealError::from)?
        }
        None => {
            let kms = super::kms::connect(src, "decrypt").await?;
            rainlogs_sealed::kms::Kms::decrypt_data_key(
                &kms,
                &header.context,
                version,
                &header.wrapped_key,
            )
            .await
            .map_err(SealError::from)?
        }
    };
    let opener = Opener::new(reader, &header, &data_key)?;
    Ok(opener.copy_to(out)?)
}

pub async fn run(src: &ConfigSource, args: &DecryptArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout.lock());
    match decrypt_to(src, args, &mut out).await {
        Ok(summary) => {
            out.flush().context("write stdout")?;
            eprintln!(
                "verified: {} records, {} bytes, sha256 {}, {} chunks",
                summary.record_count,
                summary.plaintext_len,
                hex::encode(summary.plaintext_sha256),
                summary.chunks
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = out.flush();
            eprintln!("error: {e:#}");
            eprintln!("error: output written so far (if any) is NOT verified; discard it");
            Ok(ExitCode::FAILURE)
        }
    }
}
