//! Benchmark of the sealed format (docs/BENCHMARKS.md, section "Sealed format").
//!
//! Run: `cargo run --release -p rainlogs-bench --example seal_bench [-- MIB]`
//!
//! Generates Cloudflare-like NDJSON (~2 KB records), then in the same run measures:
//! seal and open throughput (best of 3), the zstd crate at level 3 single-threaded,
//! `zstd -3 -T1` and `openssl speed -evp aes-256-gcm` (if installed), SHA-256, and the
//! peak RSS of a child process sealing and then opening a 1 GiB stream generated on
//! the fly. Prints figures; asserts nothing (speed is measured, not tested).

use std::io::{self, Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use rainlogs_sealed::kms::{GeneratedDataKey, SecretKey, TenantKey};
use rainlogs_sealed::{open_with_tenant_key, SealContext, SealParams, Sealer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn hex(&mut self, n: usize) -> String {
        let mut s = String::with_capacity(n);
        while s.len() < n {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(n);
        s
    }
}

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "okhttp/4.12.0",
];
const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/api/v2/orders",
    "/api/v2/users/me",
    "/static/js/app",
    "/static/css/main",
    "/images/products",
    "/checkout",
    "/login",
    "/search",
    "/de/produkte",
    "/fr/panier",
];
const COUNTRIES: &[&str] = &["de", "fr", "nl", "at", "pl", "it", "es", "us", "gb", "se"];
const CACHE: &[&str] = &["hit", "miss", "dynamic", "expired", "revalidated", "bypass"];
const METHODS: &[&str] = &["GET", "GET", "GET", "GET", "POST", "HEAD", "PUT", "OPTIONS"];
const STATUS: &[u64] = &[200, 200, 200, 200, 200, 304, 301, 404, 403, 500, 502];

/// One Cloudflare-like log record of about 2 KB, newline-terminated.
fn record(r: &mut Rng, i: u64, out: &mut Vec<u8>) {
    let ts = 1_764_489_600_000_000_000u64 + i * 7_000_000 + r.below(5_000_000);
    let status = STATUS[r.below(STATUS.len() as u64) as usize];
    let path = r.pick(PATHS);
    let ua = r.pick(UAS);
    let country = r.pick(COUNTRIES);
    let ray = r.hex(16);
    let _ = write!(
        out,
        concat!(
            r#"{{"BotScore":{},"BotScoreSrc":"Machine Learning","CacheCacheStatus":"{}","CacheResponseBytes":{},"CacheResponseStatus":{},"#,
            r#""ClientASN":{},"ClientCountry":"{}","ClientDeviceType":"{}","ClientIP":"{}.{}.{}.{}","#,
            r#""ClientRequestBytes":{},"ClientRequestHost":"shop.example.eu","ClientRequestMethod":"{}","ClientRequestPath":"{}","ClientRequestProtocol":"HTTP/2","#,
            r#""ClientRequestReferer":"https://www.google.com/search?q={}&client=firefox-b-d","ClientRequestScheme":"https","ClientRequestSource":"eyeball","#,
            r#""ClientRequestURI":"{}/{}?utm_source=newsletter&utm_campaign={}&session={}","ClientRequestUserAgent":"{}","#,
            r#""ClientSSLCipher":"AEAD-AES128-GCM-SHA256","ClientSSLProtocol":"TLSv1.3","ClientSrcPort":{},"ClientTCPRTTMs":{},"ClientXRequestedWith":"","#,
            r#""Cookies":{{"__cf_bm":"{}","cart":"{}"}},"EdgeColoCode":"FRA","EdgeColoID":{},"EdgeEndTimestamp":{},"#,
            r#""EdgeRequestHost":"shop.example.eu","EdgeResponseBodyBytes":{},"#,
            r#""EdgeResponseBytes":{},"EdgeResponseCompressionRatio":{}.{:02},"EdgeResponseContentType":"text/html","EdgeResponseStatus":{},"EdgeServerIP":"","#,
            r#""EdgeStartTimestamp":{},"EdgeTimeToFirstByteMs":{},"#,
            r#""JA3Hash":"{}","JA4":"t13d1516h2_8daaf6152771_{}","OriginDNSResponseTimeMs":{},"OriginIP":"192.0.2.{}","#,
            r#""OriginResponseBytes":0,"OriginResponseDurationMs":{},"OriginResponseHTTPExpires":"","OriginResponseHTTPLastModified":"","OriginResponseStatus":{},"#,
            r#""OriginResponseTime":{},"OriginSSLProtocol":"TLSv1.3","OriginTCPHandshakeDurationMs":{},"OriginTLSHandshakeDurationMs":{},"ParentRayID":"00","#,
            r#""RayID":"{}","RequestHeaders":{{"accept-language":"{}-{},en;q=0.8","x-forwarded-for":"{}.{}.{}.{}"}},"ResponseHeaders":{{"cf-cache-status":"{}","x-request-id":"{}"}},"#,
            r#""SecurityAction":"","SecurityLevel":"med","WAFAttackScore":{},"WAFFlags":"0","WAFMatchedVar":"","#,
            r#""WAFRCEAttackScore":{},"WAFSQLiAttackScore":{},"WAFXSSAttackScore":{},"ZoneName":"example.eu"}}"#,
            "\n"
        ),
        r.below(100),
        r.pick(CACHE),
        r.below(200_000),
        status,
        3320 + r.below(60000),
        country,
        if r.below(3) == 0 { "mobile" } else { "desktop" },
        r.below(223) + 1,
        r.below(256),
        r.below(256),
        r.below(256),
        200 + r.below(3000),
        r.pick(METHODS),
        path,
        r.hex(12),
        path,
        r.hex(8),
        r.hex(6),
        r.hex(24),
        ua,
        1024 + r.below(60000),
        r.below(80),
        r.hex(43),
        r.hex(20),
        10 + r.below(300),
        ts + 20_000_000 + r.below(80_000_000),
        r.below(900_000),
        r.below(950_000),
        r.below(9),
        r.below(100),
        status,
        ts,
        r.below(400),
        r.hex(32),
        r.hex(12),
        r.below(20),
        r.below(255),
        r.below(900),
        status,
        r.below(900),
        r.below(30),
        r.below(40),
        ray,
        country,
        country.to_uppercase(),
        r.below(223) + 1,
        r.below(256),
        r.below(256),
        r.below(256),
        r.pick(CACHE),
        r.hex(32),
        r.below(100),
        r.below(100),
        r.below(100),
        r.below(100),
    );
}

fn corpus(bytes: usize) -> (Vec<u8>, u64) {
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(bytes + 4096);
    let mut i = 0;
    while out.len() < bytes {
        record(&mut r, i, &mut out);
        i += 1;
    }
    (out, i)
}

fn context() -> SealContext {
    SealContext {
        tenant: Uuid::from_u128(1),
        zone: Uuid::from_u128(2),
        window_start: Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap(),
        window_end: Utc.with_ymd_and_hms(2026, 11, 30, 8, 1, 0).unwrap(),
    }
}

fn keys() -> (TenantKey, GeneratedDataKey) {
    let tk = TenantKey::new(context().tenant, 1, SecretKey::random());
    let key = SecretKey::random();
    let dk = GeneratedDataKey {
        wrapped: tk.wrap_data_key(&context(), &key),
        key,
        tenant_key_version: 1,
    };
    (tk, dk)
}

/// CPU seconds (user + system) from a `stat` file: `fields` are indices after the
/// command name (11,12 = own utime/stime; 13,14 = waited-for children). 100 Hz ticks.
fn stat_seconds(path: &str, fields: [usize; 2]) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(fields[0]) + ticks(fields[1])) / 100.0
}

/// Whole-process CPU time (all threads).
fn cpu_seconds() -> f64 {
    stat_seconds("/proc/self/stat", [11, 12])
}

/// The calling thread's CPU time: the seal's critical path (compress + encrypt).
fn thread_cpu_seconds() -> f64 {
    stat_seconds("/proc/thread-self/stat", [11, 12])
}

/// CPU time of waited-for child processes (the zstd CLI).
fn children_cpu_seconds() -> f64 {
    stat_seconds("/proc/self/stat", [13, 14])
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn seal_once(plain: &[u8], dk: &GeneratedDataKey) -> (Vec<u8>, Duration, f64, f64) {
    let cpu0 = cpu_seconds();
    let thread0 = thread_cpu_seconds();
    let t = Instant::now();
    let mut sealer = Sealer::new(
        Vec::with_capacity(plain.len() / 4),
        SealParams::new(context(), dk),
    )
    .unwrap();
    for piece in plain.chunks(1 << 20) {
        sealer.write_all(piece).unwrap();
    }
    let (out, _) = sealer.finish().unwrap();
    (
        out,
        t.elapsed(),
        cpu_seconds() - cpu0,
        thread_cpu_seconds() - thread0,
    )
}

fn child_rss(gib: u64) {
    let (tk, dk) = keys();
    let path = std::env::temp_dir().join(format!("rainlogs-bench-{}.sealed", std::process::id()));
    let file = io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut sealer = Sealer::new(file, SealParams::new(context(), &dk)).unwrap();
    let mut r = Rng(99);
    let mut buf = Vec::with_capacity(1 << 20);
    let total = gib << 30;
    let (mut written, mut i) = (0u64, 0u64);
    while written < total {
        buf.clear();
        while buf.len() < (1 << 20) - 4096 {
            record(&mut r, i, &mut buf);
            i += 1;
        }
        sealer.write_all(&buf).unwrap();
        written += buf.len() as u64;
    }
    let (_, summary) = sealer.finish().unwrap();
    let seal_peak = peak_rss_kib();
    let file = std::fs::File::open(&path).unwrap();
    let mut opener = open_with_tenant_key(io::BufReader::new(file), &tk, None).unwrap();
    let mut sink = vec![0u8; 1 << 16];
    let mut opened = 0u64;
    loop {
        let n = opener.read(&mut sink).unwrap();
        if n == 0 {
            break;
        }
        opened += n as u64;
    }
    assert_eq!(opened, summary.plaintext_len);
    let _ = std::fs::remove_file(&path);
    println!(
        "{} {} {} {} {}",
        summary.plaintext_len,
        summary.object_len,
        summary.record_count,
        seal_peak,
        peak_rss_kib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--rss-child") {
        child_rss(args.get(2).and_then(|v| v.parse().ok()).unwrap_or(1));
        return;
    }
    let mib: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(128);
    let (plain, records) = corpus(mib << 20);
    println!(
        "corpus: {} MiB, {} records, {:.0} B/record",
        mib,
        records,
        plain.len() as f64 / records as f64
    );
    let (tk, dk) = keys();

    // zstd CLI, same corpus, same run. All measurements are interleaved round by round
    // (the host is shared and noisy); each figure is the best of its rounds.
    let path = std::env::temp_dir().join(format!("rainlogs-bench-{}.ndjson", std::process::id()));
    std::fs::write(&path, &plain).unwrap();
    const ROUNDS: usize = 5;
    let (mut zstd_cli, mut zstd_lib, mut sha, mut seal, mut open) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut sealed = Vec::new();
    for _ in 0..ROUNDS {
        let c0 = children_cpu_seconds();
        let t = Instant::now();
        let ok = Command::new("zstd")
            .args(["-3", "-T1", "-q", "-c"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            zstd_cli.push((t.elapsed(), children_cpu_seconds() - c0, 0.0));
        }

        let c0 = thread_cpu_seconds();
        let t = Instant::now();
        let mut enc = zstd::stream::write::Encoder::new(io::sink(), 3).unwrap();
        for piece in plain.chunks(1 << 20) {
            enc.write_all(piece).unwrap();
        }
        enc.finish().unwrap();
        zstd_lib.push((t.elapsed(), thread_cpu_seconds() - c0, 0.0));

        let t = Instant::now();
        let _ = Sha256::digest(&plain);
        sha.push((t.elapsed(), 0.0, 0.0));

        let (out, d, cpu, main_cpu) = seal_once(&plain, &dk);
        sealed = out;
        seal.push((d, cpu, main_cpu));

        let cpu0 = cpu_seconds();
        let t = Instant::now();
        let mut opener = open_with_tenant_key(&sealed[..], &tk, Some(&context())).unwrap();
        let mut sink = vec![0u8; 1 << 16];
        while opener.read(&mut sink).unwrap() > 0 {}
        open.push((t.elapsed(), cpu_seconds() - cpu0, 0.0));
    }
    let _ = std::fs::remove_file(&path);
    let fastest = |v: &[(Duration, f64, f64)]| v.iter().copied().min_by_key(|x| x.0);
    let least_cpu = |v: &[(Duration, f64, f64)], i: usize| {
        v.iter()
            .map(|x| if i == 1 { x.1 } else { x.2 })
            .fold(f64::INFINITY, f64::min)
    };
    let gb = plain.len() as f64 / 1e9;
    let openssl = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-256-gcm",
            "-seconds",
            "2",
            "-bytes",
            "16384",
        ])
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            text.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("aes-256-gcm"))
                .and_then(|l| l.split_whitespace().last().map(str::to_owned))
        })
        .and_then(|v| v.trim_end_matches('k').parse::<f64>().ok())
        .map(|kbps| kbps * 1000.0 / 1e6);

    let zc = fastest(&zstd_cli);
    let zc_mbps = zc.map_or(f64::NAN, |x| mbps(plain.len(), x.0));
    let zc_cpu = least_cpu(&zstd_cli, 1) / gb;
    let (zl, sh, se, op) = (
        fastest(&zstd_lib).unwrap(),
        fastest(&sha).unwrap(),
        fastest(&seal).unwrap(),
        fastest(&open).unwrap(),
    );
    let se_mbps = mbps(plain.len(), se.0);
    let se_main = least_cpu(&seal, 2) / gb;
    println!(
        "ratio: sealed/plain = {:.3}",
        sealed.len() as f64 / plain.len() as f64
    );
    println!("best of {ROUNDS} interleaved rounds; CPU = least CPU-seconds per GB of plaintext");
    println!("zstd -3 -T1 (CLI):          {zc_mbps:7.1} MB/s wall, {zc_cpu:.2} CPU-s/GB");
    println!(
        "zstd crate level 3, 1 thr:  {:7.1} MB/s wall, {:.2} CPU-s/GB",
        mbps(plain.len(), zl.0),
        least_cpu(&zstd_lib, 1) / gb
    );
    println!(
        "sha256 (sha2 crate):        {:7.1} MB/s wall",
        mbps(plain.len(), sh.0)
    );
    match openssl {
        Some(v) => println!("openssl aes-256-gcm 16KiB:  {v:7.1} MB/s"),
        None => println!("openssl aes-256-gcm: not measured (openssl speed failed)"),
    }
    println!(
        "seal:                       {se_mbps:7.1} MB/s wall ({:.0}% of zstd CLI), {:.2} CPU-s/GB all threads, \
         {se_main:.2} CPU-s/GB critical path ({:.0}% of zstd CLI's throughput per CPU)",
        100.0 * se_mbps / zc_mbps,
        least_cpu(&seal, 1) / gb,
        100.0 * zc_cpu / se_main
    );
    println!(
        "open:                       {:7.1} MB/s wall, {:.2} CPU-s/GB",
        mbps(plain.len(), op.0),
        least_cpu(&open, 1) / gb
    );

    let exe = std::env::current_exe().unwrap();
    match Command::new(exe).args(["--rss-child", "1"]).output() {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let f: Vec<u64> = text
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if let [plain_len, object_len, recs, seal_kib, open_kib] = f[..] {
                println!(
                    "1 GiB stream: {plain_len} B plaintext, {recs} records -> {object_len} B sealed; \
                     peak RSS after seal {:.1} MiB, after open {:.1} MiB",
                    seal_kib as f64 / 1024.0,
                    open_kib as f64 / 1024.0
                );
            }
        }
        other => println!("1 GiB stream: child failed: {other:?}"),
    }
}
