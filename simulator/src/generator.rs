//! The deterministic record generator: realistic `http_requests` records as a pure
//! function of (seed, zone, minute, index).
//!
//! Nothing here reads the clock or keeps state between calls, so the same query gives
//! the same bytes on every run, on every machine: tests compute the expected SHA-256
//! of a window without a server, and a retried window is byte-identical. Records are
//! produced one at a time into a caller's buffer, so a window of any size streams in
//! constant memory.
//!
//! Layout of a minute: a zone's volume gives `n` records for the minute (0 for an
//! empty minute); record `i` gets an `EdgeEndTimestamp` inside the `i`-th of `n` equal
//! slots of the minute, so records come out in time order and a window `[start, end)`
//! at any granularity selects them by `EdgeEndTimestamp` without generating the rest.

use std::io::Write;

use crate::fields::Field;

const NANOS_PER_MINUTE: i64 = 60_000_000_000;
/// Record indexes are packed in 24 bits of the Ray ID.
pub const MAX_RECORDS_PER_MINUTE: u64 = (1 << 24) - 1;

/// How timestamp fields are rendered (the `timestamps` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampFormat {
    /// Integer nanoseconds since the epoch (Cloudflare's default).
    #[default]
    UnixNano,
    /// Integer seconds since the epoch.
    Unix,
    /// An RFC 3339 string with second precision, UTC (`2026-11-30T08:00:01Z`).
    Rfc3339,
}

impl TimestampFormat {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "unixnano" => Some(Self::UnixNano),
            "unix" => Some(Self::Unix),
            "rfc3339" => Some(Self::Rfc3339),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnixNano => "unixnano",
            Self::Unix => "unix",
            Self::Rfc3339 => "rfc3339",
        }
    }
}

/// How many records a zone produces.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ZoneVolume {
    /// Records in a non-empty minute (at most [`MAX_RECORDS_PER_MINUTE`]).
    pub records_per_minute: u64,
    /// Fraction of minutes, chosen deterministically, that have no records at all.
    #[serde(default)]
    pub empty_ratio: f64,
    /// Fraction of records, chosen deterministically, that Cloudflare receives late:
    /// `logs/received` serves them in the window of their receipt, after the window of
    /// their own time, as Cloudflare does (docs/LOGPULL.md, "Late records").
    #[serde(default)]
    pub late_ratio: f64,
    /// How late a late record is received at most, in seconds (uniform in `(0, max]`).
    #[serde(default)]
    pub late_max_seconds: u32,
}

impl ZoneVolume {
    /// `records_per_minute` records in every minute, none of them late.
    pub const fn steady(records_per_minute: u64) -> Self {
        Self {
            records_per_minute,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        }
    }

    /// The longest a record is received after its time, in nanoseconds (0: never late).
    fn late_max_ns(&self) -> i64 {
        if self.late_ratio > 0.0 {
            i64::from(self.late_max_seconds) * 1_000_000_000
        } else {
            0
        }
    }
}

impl Default for ZoneVolume {
    fn default() -> Self {
        Self::steady(100)
    }
}

/// What a `logs/received` request selects, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Inclusive, nanoseconds since the epoch.
    pub start_ns: i64,
    /// Exclusive, nanoseconds since the epoch.
    pub end_ns: i64,
    pub fields: Vec<Field>,
    pub timestamps: TimestampFormat,
    pub count: Option<u64>,
    /// Fraction of records kept, in `[0.001, 1.0]`.
    pub sample: Option<f64>,
    /// Select by the time Cloudflare received each record (Logpull's `logs/received`),
    /// not by its `EdgeEndTimestamp`: differs only for a zone with late records. Tests
    /// computing what a restore by record time must give select by record time.
    pub by_received: bool,
}

/// The generator for one simulator seed.
#[derive(Debug, Clone, Copy)]
pub struct Generator {
    seed: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How many records `zone` has in `minute` (minutes since the epoch).
    pub fn minute_count(&self, zone: &str, minute: i64, volume: &ZoneVolume) -> u64 {
        let n = volume.records_per_minute.min(MAX_RECORDS_PER_MINUTE);
        if n == 0 {
            return 0;
        }
        if volume.empty_ratio > 0.0 {
            let h = mix4(self.seed, zone_hash(zone), minute as u64, u64::MAX);
            // The top 53 bits as a uniform fraction in [0, 1).
            let u = (h >> 11) as f64 / (1u64 << 53) as f64;
            if u < volume.empty_ratio {
                return 0;
            }
        }
        n
    }

    /// When Cloudflare receives the record of `zone` ending at `end_ns` (record `index`
    /// of `minute`): at its end, or up to the volume's lateness after it.
    fn received_ns(&self, zh: u64, minute: i64, index: u64, end_ns: i64, v: &ZoneVolume) -> i64 {
        let max = v.late_max_ns();
        if max == 0 {
            return end_ns;
        }
        let h = mix4(self.seed, zh, minute as u64, index ^ 0x1a7e_1a7e_1a7e_1a7e);
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        if u >= v.late_ratio {
            return end_ns;
        }
        end_ns + 1 + (mix(h) % max as u64) as i64
    }

    /// The records of `zone` selected by `sel`, as an iterator writing NDJSON lines.
    pub fn window(&self, zone: &str, volume: ZoneVolume, sel: Selection) -> WindowRecords {
        // Received late, a record of an earlier minute can be in the selection.
        let lookback = if sel.by_received {
            volume.late_max_ns()
        } else {
            0
        };
        WindowRecords {
            generator: *self,
            zone: zone.to_owned(),
            zone_hash: zone_hash(zone),
            volume,
            lookback,
            minute: (sel.start_ns - lookback).div_euclid(NANOS_PER_MINUTE),
            last_minute: (sel.end_ns - 1).div_euclid(NANOS_PER_MINUTE),
            sel,
            index: 0,
            index_end: 0,
            minute_n: 0,
            minute_loaded: false,
            emitted: 0,
            last_end_ns: None,
        }
    }

    /// The whole NDJSON body for a selection, in memory: for tests and small windows.
    pub fn window_body(&self, zone: &str, volume: ZoneVolume, sel: &Selection) -> Vec<u8> {
        let mut out = Vec::new();
        let mut it = self.window(zone, volume, sel.clone());
        while it.write_next(&mut out) {}
        out
    }

    /// The Ray ID of record `index` of `minute`.
    pub fn ray_id(&self, zone: &str, minute: i64, index: u64) -> u64 {
        let check = mix4(self.seed, zone_hash(zone), minute as u64, index) & 0xfff;
        ((minute as u64 & 0xfff_ffff) << 36) | ((index & 0xff_ffff) << 12) | check
    }

    /// Finds the record a Ray ID names, writing it as one NDJSON line. `None` when the
    /// ID is not one this generator produced for `zone`.
    pub fn lookup_ray(
        &self,
        zone: &str,
        ray_hex: &str,
        volume: &ZoneVolume,
        fields: &[Field],
        timestamps: TimestampFormat,
        out: &mut Vec<u8>,
    ) -> bool {
        if ray_hex.len() != 16 {
            return false;
        }
        let Ok(ray) = u64::from_str_radix(ray_hex, 16) else {
            return false;
        };
        let minute = (ray >> 36) as i64;
        let index = (ray >> 12) & 0xff_ffff;
        let n = self.minute_count(zone, minute, volume);
        if index >= n || self.ray_id(zone, minute, index) != ray {
            return false;
        }
        let rec = Record::generate(self, zone_hash(zone), zone, minute, index, n);
        rec.write(out, fields, timestamps);
        true
    }
}

/// Lazily produces the NDJSON lines of one window. Cloning it keeps its position: the
/// Logpush pusher clones one at the start of a batch to produce that batch again for a
/// retry, byte for byte.
#[derive(Debug, Clone)]
pub struct WindowRecords {
    generator: Generator,
    zone: String,
    zone_hash: u64,
    volume: ZoneVolume,
    sel: Selection,
    /// How far before the selection records may lie (late records, by received time).
    lookback: i64,
    minute: i64,
    last_minute: i64,
    index: u64,
    index_end: u64,
    minute_n: u64,
    minute_loaded: bool,
    emitted: u64,
    /// `EdgeEndTimestamp` (ns) of the last record written.
    last_end_ns: Option<i64>,
}

impl WindowRecords {
    /// `EdgeEndTimestamp` (nanoseconds) of the last record written, if any: records come
    /// out in strictly increasing time, so a selection starting 1 ns later continues
    /// exactly after it.
    pub fn last_end_ns(&self) -> Option<i64> {
        self.last_end_ns
    }

    /// Appends the next record (with its newline) to `out`; `false` when the window is done.
    pub fn write_next(&mut self, out: &mut Vec<u8>) -> bool {
        loop {
            if let Some(count) = self.sel.count {
                if self.emitted >= count {
                    return false;
                }
            }
            if self.minute > self.last_minute {
                return false;
            }
            if !self.minute_loaded {
                self.load_minute();
            }
            if self.index >= self.index_end {
                self.minute += 1;
                self.minute_loaded = false;
                continue;
            }
            let index = self.index;
            self.index += 1;
            let mut rng = record_rng(&self.generator, self.zone_hash, self.minute, index);
            let end_ns = slot_timestamp(self.minute, index, self.minute_n, &mut rng);
            let at = if self.sel.by_received {
                self.generator
                    .received_ns(self.zone_hash, self.minute, index, end_ns, &self.volume)
            } else {
                end_ns
            };
            if at < self.sel.start_ns || at >= self.sel.end_ns {
                continue;
            }
            if let Some(sample) = self.sel.sample {
                let keep = mix4(
                    self.generator.seed,
                    self.zone_hash,
                    self.minute as u64,
                    index ^ 0x5a5a,
                ) % 1_000_000;
                if keep as f64 >= sample * 1_000_000.0 {
                    continue;
                }
            }
            let rec = Record::from_rng(
                &self.generator,
                self.zone_hash,
                &self.zone,
                self.minute,
                index,
                end_ns,
                rng,
            );
            rec.write(out, &self.sel.fields, self.sel.timestamps);
            self.emitted += 1;
            self.last_end_ns = Some(end_ns);
            return true;
        }
    }

    /// Sets the index range of the current minute that can fall inside the window, so
    /// a 15-second window does not generate the other 45 seconds of the minute.
    fn load_minute(&mut self) {
        self.minute_loaded = true;
        let n = self
            .generator
            .minute_count(&self.zone, self.minute, &self.volume);
        self.minute_n = n;
        if n == 0 {
            self.index = 0;
            self.index_end = 0;
            return;
        }
        let base = self.minute * NANOS_PER_MINUTE;
        let from = (self.sel.start_ns - self.lookback - base).clamp(0, NANOS_PER_MINUTE) as u128;
        let to = (self.sel.end_ns - base).clamp(0, NANOS_PER_MINUTE) as u128;
        let slot_of = |off: u128| (off * n as u128 / NANOS_PER_MINUTE as u128) as u64;
        self.index = slot_of(from);
        self.index_end = (slot_of(to) + 1).min(n);
    }
}

/// Record `index` of `n` in `minute` ends inside its own slot of the minute.
fn slot_timestamp(minute: i64, index: u64, n: u64, rng: &mut Rng) -> i64 {
    let base = minute * NANOS_PER_MINUTE;
    let lo = (index as u128 * NANOS_PER_MINUTE as u128 / n as u128) as i64;
    let hi = ((index as u128 + 1) * NANOS_PER_MINUTE as u128 / n as u128) as i64;
    let width = (hi - lo).max(1) as u64;
    base + lo + rng.below(width) as i64
}

fn record_rng(generator: &Generator, zone_hash: u64, minute: i64, index: u64) -> Rng {
    Rng(mix4(generator.seed, zone_hash, minute as u64, index))
}

/// SplitMix64: tiny, fast and fully specified, so the generator's output cannot change
/// with a dependency upgrade.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        self.next_u64() % n
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Picks from `(weight, item)` pairs.
    fn weighted<T: Copy>(&mut self, items: &[(u32, T)]) -> T {
        let total: u64 = items.iter().map(|(w, _)| *w as u64).sum();
        let mut x = self.below(total);
        for (w, item) in items {
            if x < *w as u64 {
                return *item;
            }
            x -= *w as u64;
        }
        items[items.len() - 1].1
    }

    fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1000) < per_thousand
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mix4(a: u64, b: u64, c: u64, d: u64) -> u64 {
    mix(mix(mix(mix(a) ^ b) ^ c) ^ d)
}

/// FNV-1a: a stable hash of the zone ID (std's hasher is randomised per process).
fn zone_hash(zone: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in zone.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Apex hosts: ASCII, IDN in Unicode form, and mixed scripts, so consumers see real UTF-8.
const APEXES: &[&str] = &[
    "example.com",
    "bücher-müller.de",
    "café-lumière.fr",
    "пример.рф",
    "例え.jp",
    "zürich-bank.ch",
    "shop.example.eu",
    "ελληνικά.gr",
];
const SUBDOMAINS: &[&str] = &["", "www.", "api.", "cdn.", "shop."];
const METHODS: &[(u32, &str)] = &[
    (800, "GET"),
    (120, "POST"),
    (30, "HEAD"),
    (20, "PUT"),
    (20, "OPTIONS"),
    (10, "DELETE"),
];
const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/products/",
    "/api/v1/orders/",
    "/static/app.",
    "/images/",
    "/search",
    "/login",
    "/wp-login.php",
    "/cart",
    "/blog/",
    "/.env",
    "/suche/m%C3%BCsli",
    "/favicon.ico",
];
const QUERIES: &[&str] = &[
    "",
    "",
    "",
    "?page=2",
    "?q=%C3%BCber+uns&lang=de",
    "?utm_source=newsletter&utm_medium=email&utm_campaign=winter",
    "?id=1%27%20OR%20%271%27=%271",
    "?ref=%E4%BE%8B%E3%81%88",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.10.1",
    "python-requests/2.32.3",
    "Mozilla/5.0 (compatible; \"quoted\" scanner\\1.0; tab\there)",
];
const COUNTRIES: &[&str] = &[
    "de", "fr", "nl", "at", "ch", "it", "es", "pl", "se", "us", "gb", "jp", "br", "in", "t1", "xx",
];
const ASNS: &[u64] = &[
    3320, 3209, 6805, 13335, 16509, 15169, 8075, 12322, 3215, 1136, 5089, 7922, 24940, 14061,
];
const STATUSES: &[(u32, u64)] = &[
    (740, 200),
    (80, 304),
    (60, 404),
    (25, 301),
    (15, 302),
    (30, 403),
    (10, 206),
    (10, 429),
    (15, 500),
    (10, 502),
    (5, 503),
];
const CACHE_STATUSES: &[&str] = &[
    "hit",
    "miss",
    "expired",
    "dynamic",
    "bypass",
    "revalidated",
    "stale",
    "unknown",
];
const COLOS: &[(&str, u64)] = &[
    ("FRA", 25),
    ("AMS", 14),
    ("CDG", 19),
    ("LHR", 7),
    ("MUC", 289),
    ("VIE", 105),
    ("ZRH", 154),
    ("ARN", 35),
    ("WAW", 97),
    ("MAD", 56),
];
const CONTENT_TYPES: &[&str] = &[
    "text/html",
    "application/json",
    "image/webp",
    "application/javascript",
    "text/css",
    "image/png",
];
const BOT_SOURCES: &[&str] = &[
    "Machine Learning",
    "Heuristics",
    "Verified Bot",
    "JS Fingerprinting",
    "Not Computed",
];
const BOT_TAGS: &[&str] = &["api", "headless", "search_engine", "monitoring", "cdn_cgi"];
const DEVICE_TYPES: &[&str] = &["desktop", "mobile", "tablet"];
const PROTOCOLS: &[&str] = &["HTTP/2", "HTTP/1.1", "HTTP/3"];
const SECURITY_ACTIONS: &[&str] = &[
    "block",
    "challenge",
    "managedChallenge",
    "jschallenge",
    "log",
    "skip",
];
const SECURITY_SOURCES: &[&str] = &[
    "firewallManaged",
    "firewallCustom",
    "rateLimit",
    "botFight",
    "l7ddos",
];
const REGIONS: &[&str] = &["BE", "BY", "HE", "IDF", "NH", "ZH", "W", "LAZ", "MD", "MZ"];
const LANGUAGES: &[&str] = &[
    "de-DE,de;q=0.9,en;q=0.8",
    "fr-FR,fr;q=0.9",
    "en-US,en;q=0.9",
    "nl-NL,nl;q=0.9,en;q=0.7",
    "ja-JP,ja;q=0.9",
];

/// One generated request, every field's value, before field selection.
struct Record {
    apex: &'static str,
    sub: &'static str,
    ray: u64,
    start_ns: i64,
    end_ns: i64,
    ip: [u8; 4],
    ipv6: Option<[u16; 3]>,
    port: u64,
    method: &'static str,
    path: &'static str,
    path_id: u64,
    query: &'static str,
    ua: &'static str,
    country: &'static str,
    region: &'static str,
    asn: u64,
    status: u64,
    origin_status: u64,
    cache: &'static str,
    bytes: u64,
    body_bytes: u64,
    req_bytes: u64,
    content_type: &'static str,
    colo: (&'static str, u64),
    protocol: &'static str,
    device: &'static str,
    bot_score: u64,
    bot_src: &'static str,
    bot_tags: Vec<&'static str>,
    waf_score: u64,
    waf_rce: u64,
    waf_sqli: u64,
    waf_xss: u64,
    blocked: Option<(&'static str, &'static str, u64)>,
    ttfb: u64,
    rtt: u64,
    origin_ms: u64,
    ja3: u64,
    cookie: Option<u64>,
    lang: &'static str,
}

impl Record {
    fn generate(
        generator: &Generator,
        zone_hash: u64,
        zone: &str,
        minute: i64,
        index: u64,
        n: u64,
    ) -> Self {
        let mut rng = record_rng(generator, zone_hash, minute, index);
        let end_ns = slot_timestamp(minute, index, n, &mut rng);
        Self::from_rng(generator, zone_hash, zone, minute, index, end_ns, rng)
    }

    fn from_rng(
        generator: &Generator,
        zone_hash: u64,
        zone: &str,
        minute: i64,
        index: u64,
        end_ns: i64,
        mut rng: Rng,
    ) -> Self {
        let status = rng.weighted(STATUSES);
        let cache = if status == 200 || status == 304 {
            rng.pick(CACHE_STATUSES)
        } else {
            "dynamic"
        };
        let origin_status = if cache == "hit" { 0 } else { status };
        let bytes = rng.range(180, 250_000);
        let waf_score = rng.range(1, 99);
        let blocked = if status == 403 || rng.chance(15) {
            Some((
                rng.pick(SECURITY_ACTIONS),
                rng.pick(SECURITY_SOURCES),
                rng.next_u64(),
            ))
        } else {
            None
        };
        Self {
            apex: APEXES[(zone_hash % APEXES.len() as u64) as usize],
            sub: rng.pick(SUBDOMAINS),
            ray: generator.ray_id(zone, minute, index),
            start_ns: end_ns - rng.range(1_000_000, 2_000_000_000) as i64,
            end_ns,
            ip: [
                rng.pick(&[
                    31u8, 46, 62, 77, 81, 85, 91, 109, 141, 178, 185, 193, 212, 217,
                ]),
                rng.below(256) as u8,
                rng.below(256) as u8,
                rng.range(1, 254) as u8,
            ],
            ipv6: rng.chance(120).then(|| {
                [
                    rng.below(0x10000) as u16,
                    rng.below(0x10000) as u16,
                    rng.below(0x10000) as u16,
                ]
            }),
            port: rng.range(1024, 65535),
            method: rng.weighted(METHODS),
            path: rng.pick(PATHS),
            path_id: rng.range(1, 999_999),
            query: rng.pick(QUERIES),
            ua: rng.pick(USER_AGENTS),
            country: rng.pick(COUNTRIES),
            region: rng.pick(REGIONS),
            asn: rng.pick(ASNS),
            status,
            origin_status,
            cache,
            bytes,
            body_bytes: bytes.saturating_sub(rng.range(150, 900)),
            req_bytes: rng.range(300, 4_000),
            content_type: rng.pick(CONTENT_TYPES),
            colo: rng.pick(COLOS),
            protocol: rng.pick(PROTOCOLS),
            device: rng.pick(DEVICE_TYPES),
            bot_score: rng.range(1, 99),
            bot_src: rng.pick(BOT_SOURCES),
            bot_tags: (0..rng.below(3)).map(|_| rng.pick(BOT_TAGS)).collect(),
            waf_score,
            waf_rce: rng.range(1, 99),
            waf_sqli: rng.range(1, 99),
            waf_xss: rng.range(1, 99),
            blocked,
            ttfb: rng.range(2, 900),
            rtt: rng.range(1, 250),
            origin_ms: rng.range(5, 800),
            ja3: rng.next_u64(),
            cookie: rng.chance(400).then(|| rng.next_u64()),
            lang: rng.pick(LANGUAGES),
        }
    }

    /// Writes the selected fields as one JSON object and a newline.
    fn write(&self, out: &mut Vec<u8>, fields: &[Field], ts: TimestampFormat) {
        out.push(b'{');
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(field.name().as_bytes());
            out.extend_from_slice(b"\":");
            self.write_value(out, *field, ts);
        }
        out.extend_from_slice(b"}\n");
    }

    fn write_value(&self, out: &mut Vec<u8>, field: Field, ts: TimestampFormat) {
        // Writing into a Vec cannot fail; the results of write! are ignored for that reason.
        use Field as F;
        match field {
            F::BotScore => num(out, self.bot_score),
            F::BotScoreSrc => string(out, self.bot_src),
            F::BotTags => str_array(out, &self.bot_tags),
            F::CacheCacheStatus => string(out, self.cache),
            F::CacheResponseBytes => num(out, if self.cache == "hit" { self.bytes } else { 0 }),
            F::CacheResponseStatus => num(out, if self.cache == "hit" { self.status } else { 0 }),
            F::ClientASN => num(out, self.asn),
            F::ClientCountry => string(out, self.country),
            F::ClientDeviceType => string(out, self.device),
            F::ClientIP => {
                out.push(b'"');
                self.write_ip(out);
                out.push(b'"');
            }
            F::ClientRegionCode => string(out, self.region),
            F::ClientRequestBytes => num(out, self.req_bytes),
            F::ClientRequestHost => self.write_host(out),
            F::ClientRequestMethod => string(out, self.method),
            F::ClientRequestPath => {
                out.push(b'"');
                self.write_path(out);
                out.push(b'"');
            }
            F::ClientRequestProtocol => string(out, self.protocol),
            F::ClientRequestReferer => {
                if self.path_id % 3 == 0 {
                    string(out, "")
                } else {
                    out.extend_from_slice(b"\"https://");
                    push_escaped(out, self.sub);
                    push_escaped(out, self.apex);
                    out.extend_from_slice(b"/\"");
                }
            }
            F::ClientRequestScheme => string(out, "https"),
            F::ClientRequestURI => {
                out.push(b'"');
                self.write_path(out);
                push_escaped(out, self.query);
                out.push(b'"');
            }
            F::ClientRequestUserAgent => string(out, self.ua),
            F::ClientSSLCipher => string(out, "AEAD-AES128-GCM-SHA256"),
            F::ClientSSLProtocol => string(out, "TLSv1.3"),
            F::ClientSrcPort => num(out, self.port),
            F::ClientTCPRTTMs => num(out, self.rtt),
            F::ClientXRequestedWith => string(
                out,
                if self.method == "POST" {
                    "XMLHttpRequest"
                } else {
                    ""
                },
            ),
            F::Cookies => match self.cookie {
                Some(c) => {
                    let _ = write!(
                        out,
                        "{{\"__cf_bm\":\"{c:016x}{:016x}\",\"lang\":\"{}\"}}",
                        mix(c),
                        &self.lang[..2]
                    );
                }
                None => out.extend_from_slice(b"{}"),
            },
            F::EdgeColoCode => string(out, self.colo.0),
            F::EdgeColoID => num(out, self.colo.1),
            F::EdgeEndTimestamp => timestamp(out, self.end_ns, ts),
            F::EdgePathingOp => string(out, if self.blocked.is_some() { "ban" } else { "wl" }),
            F::EdgePathingSrc => string(
                out,
                if self.blocked.is_some() {
                    "filterBasedFirewall"
                } else {
                    "macro"
                },
            ),
            F::EdgePathingStatus => string(
                out,
                if self.blocked.is_some() {
                    "nr"
                } else {
                    "unknown"
                },
            ),
            F::EdgeRequestHost => self.write_host(out),
            F::EdgeResponseBodyBytes => num(out, self.body_bytes),
            F::EdgeResponseBytes => num(out, self.bytes),
            F::EdgeResponseContentType => string(out, self.content_type),
            F::EdgeResponseStatus => num(out, self.status),
            F::EdgeServerIP => {
                let _ = write!(
                    out,
                    "\"172.70.{}.{}\"",
                    self.colo.1 % 256,
                    self.ttfb % 250 + 1
                );
            }
            F::EdgeStartTimestamp => timestamp(out, self.start_ns, ts),
            F::EdgeTimeToFirstByteMs => num(out, self.ttfb),
            F::FirewallMatchesActions => match self.blocked {
                Some((action, _, _)) => str_array(out, &[action]),
                None => out.extend_from_slice(b"[]"),
            },
            F::FirewallMatchesRuleIDs => match self.blocked {
                Some((_, _, id)) => {
                    let _ = write!(out, "[\"{id:016x}{:016x}\"]", mix(id));
                }
                None => out.extend_from_slice(b"[]"),
            },
            F::FirewallMatchesSources => match self.blocked {
                Some((_, source, _)) => str_array(out, &[source]),
                None => out.extend_from_slice(b"[]"),
            },
            F::JA3Hash => {
                let _ = write!(out, "\"{:016x}{:016x}\"", self.ja3, mix(self.ja3));
            }
            F::OriginIP => {
                let _ = write!(
                    out,
                    "\"10.{}.{}.{}\"",
                    self.ip[1],
                    self.colo.1 % 256,
                    10 + self.asn % 200
                );
            }
            F::OriginResponseBytes => num(
                out,
                if self.origin_status == 0 {
                    0
                } else {
                    self.bytes
                },
            ),
            F::OriginResponseDurationMs => num(out, self.origin_ms),
            F::OriginResponseStatus => num(out, self.origin_status),
            F::OriginSSLProtocol => string(
                out,
                if self.origin_status == 0 {
                    "none"
                } else {
                    "TLSv1.3"
                },
            ),
            F::RayID => {
                let _ = write!(out, "\"{:016x}\"", self.ray);
            }
            F::RequestHeaders => {
                out.extend_from_slice(b"{\"accept-language\":");
                string(out, self.lang);
                out.extend_from_slice(b",\"x-forwarded-proto\":\"https\"");
                if self.method == "POST" {
                    out.extend_from_slice(
                        b",\"content-type\":\"application/x-www-form-urlencoded\"",
                    );
                }
                out.push(b'}');
            }
            F::ResponseHeaders => {
                out.extend_from_slice(b"{\"cf-cache-status\":");
                string(out, self.cache);
                out.extend_from_slice(b",\"content-type\":");
                string(out, self.content_type);
                out.push(b'}');
            }
            F::SecurityAction => string(out, self.blocked.map_or("", |b| b.0)),
            F::SecurityActions => match self.blocked {
                Some((action, _, _)) => str_array(out, &[action]),
                None => out.extend_from_slice(b"[]"),
            },
            F::SecurityLevel => string(out, "med"),
            F::SecurityRuleDescription => string(
                out,
                if self.blocked.is_some() {
                    "Block known scanners (Zürich ruleset)"
                } else {
                    ""
                },
            ),
            F::SecurityRuleID => match self.blocked {
                Some((_, _, id)) => {
                    let _ = write!(out, "\"{id:016x}{:016x}\"", mix(id));
                }
                None => string(out, ""),
            },
            F::SecuritySources => match self.blocked {
                Some((_, source, _)) => str_array(out, &[source]),
                None => out.extend_from_slice(b"[]"),
            },
            F::WAFAction => string(
                out,
                if self.blocked.is_some() {
                    "drop"
                } else {
                    "unknown"
                },
            ),
            F::WAFAttackScore => num(out, self.waf_score),
            F::WAFFlags => string(out, "0"),
            F::WAFMatchedVar => string(
                out,
                if self.blocked.is_some() {
                    "http.request.uri.query"
                } else {
                    ""
                },
            ),
            F::WAFProfile => string(out, "unknown"),
            F::WAFRCEAttackScore => num(out, self.waf_rce),
            F::WAFRuleID => string(out, if self.blocked.is_some() { "100173" } else { "" }),
            F::WAFRuleMessage => string(
                out,
                if self.blocked.is_some() {
                    "SQLi - String Termination"
                } else {
                    ""
                },
            ),
            F::WAFSQLiAttackScore => num(out, self.waf_sqli),
            F::WAFXSSAttackScore => num(out, self.waf_xss),
            F::ZoneName => string(out, self.apex),
        }
    }

    fn write_ip(&self, out: &mut Vec<u8>) {
        let _ = match self.ipv6 {
            Some([a, b, c]) => write!(out, "2a02:{a:x}:{b:x}::{c:x}"),
            None => write!(
                out,
                "{}.{}.{}.{}",
                self.ip[0], self.ip[1], self.ip[2], self.ip[3]
            ),
        };
    }

    fn write_host(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        push_escaped(out, self.sub);
        push_escaped(out, self.apex);
        out.push(b'"');
    }

    fn write_path(&self, out: &mut Vec<u8>) {
        push_escaped(out, self.path);
        let _ = match self.path {
            "/products/" | "/api/v1/orders/" | "/blog/" => write!(out, "{}", self.path_id),
            "/static/app." => write!(out, "{:08x}.js", self.path_id),
            "/images/" => write!(out, "{}.webp", self.path_id),
            _ => Ok(()),
        };
    }
}

fn num(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "{n}");
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_escaped(out, s);
    out.push(b'"');
}

fn str_array(out: &mut Vec<u8>, items: &[&str]) {
    out.push(b'[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, s);
    }
    out.push(b']');
}

/// JSON string escaping; non-ASCII stays raw UTF-8, as Cloudflare sends it.
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
}

fn timestamp(out: &mut Vec<u8>, ns: i64, fmt: TimestampFormat) {
    let _ = match fmt {
        TimestampFormat::UnixNano => write!(out, "{ns}"),
        TimestampFormat::Unix => write!(out, "{}", ns.div_euclid(1_000_000_000)),
        TimestampFormat::Rfc3339 => {
            let secs = ns.div_euclid(1_000_000_000);
            match chrono::DateTime::from_timestamp(secs, 0) {
                Some(t) => write!(out, "\"{}\"", t.format("%Y-%m-%dT%H:%M:%SZ")),
                None => write!(out, "\"\""),
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(start_min: i64, minutes: i64) -> Selection {
        Selection {
            start_ns: start_min * NANOS_PER_MINUTE,
            end_ns: (start_min + minutes) * NANOS_PER_MINUTE,
            fields: Field::ALL.to_vec(),
            timestamps: TimestampFormat::UnixNano,
            count: None,
            sample: None,
            by_received: false,
        }
    }

    const MINUTE: i64 = 29_400_000;

    #[test]
    fn same_seed_zone_and_window_give_the_same_bytes() {
        let vol = ZoneVolume {
            records_per_minute: 50,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        };
        let sel = selection(MINUTE, 2);
        let a = Generator::new(7).window_body("zone-a", vol, &sel);
        let b = Generator::new(7).window_body("zone-a", vol, &sel);
        assert_eq!(a, b);
        assert_ne!(a, Generator::new(8).window_body("zone-a", vol, &sel));
        assert_ne!(a, Generator::new(7).window_body("zone-b", vol, &sel));
        assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 100);
    }

    #[test]
    fn every_line_is_a_json_object_of_about_two_kilobytes() {
        let vol = ZoneVolume {
            records_per_minute: 500,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        };
        let body = Generator::new(1).window_body("z", vol, &selection(MINUTE, 1));
        let mut lines = 0;
        for line in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).expect("valid JSON");
            assert!(v.is_object());
            assert_eq!(v.as_object().map(|o| o.len()), Some(Field::ALL.len()));
            lines += 1;
        }
        let avg = body.len() / lines;
        assert!((1500..2400).contains(&avg), "average record size {avg}");
    }

    #[test]
    fn late_records_are_served_in_the_window_of_their_receipt_each_once() {
        let vol = ZoneVolume {
            late_ratio: 0.3,
            late_max_seconds: 90,
            ..ZoneVolume::steady(200)
        };
        let g = Generator::new(5);
        let lines = |b: Vec<u8>| -> Vec<Vec<u8>> {
            b.split(|&c| c == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        };
        let end_ns = |l: &[u8]| -> i64 {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            v["EdgeEndTimestamp"].as_i64().unwrap()
        };
        // Logpull's minutes [MINUTE, MINUTE + 20), one request each.
        let mut received = Vec::new();
        let mut late = 0;
        for m in 0..20 {
            let mut sel = selection(MINUTE + m, 1);
            sel.by_received = true;
            for l in lines(g.window_body("z", vol, &sel)) {
                if end_ns(&l) < sel.start_ns {
                    late += 1;
                }
                received.push(l);
            }
        }
        let unique: std::collections::HashSet<_> = received.iter().collect();
        assert_eq!(unique.len(), received.len(), "a record served twice");
        assert!(late > 100, "late records served: {late}");
        // Every record of [MINUTE + 2, MINUTE + 18) by its own time is in, once.
        let by_time = lines(g.window_body("z", vol, &selection(MINUTE + 2, 16)));
        assert_eq!(by_time.len(), 16 * 200);
        assert!(by_time.iter().all(|l| unique.contains(l)));
        // A record's own window misses it when it is late.
        let mut own = selection(MINUTE + 2, 1);
        own.by_received = true;
        let own = lines(g.window_body("z", vol, &own));
        assert!(own.len() < 200 + 60 && own.len() > 100, "{}", own.len());
        assert_ne!(own, by_time[..200].to_vec());
        // Without late records, received and own time select the same bytes.
        let mut sel = selection(MINUTE, 3);
        let plain = g.window_body("z", ZoneVolume::steady(200), &sel);
        sel.by_received = true;
        assert_eq!(plain, g.window_body("z", ZoneVolume::steady(200), &sel));
    }

    #[test]
    fn sub_minute_windows_partition_the_minute() {
        let vol = ZoneVolume {
            records_per_minute: 1000,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        };
        let g = Generator::new(3);
        let whole = g.window_body("z", vol, &selection(MINUTE, 1));
        let mut parts = Vec::new();
        for q in 0..4 {
            let mut sel = selection(MINUTE, 1);
            sel.start_ns = MINUTE * NANOS_PER_MINUTE + q * 15_000_000_000;
            sel.end_ns = sel.start_ns + 15_000_000_000;
            parts.extend(g.window_body("z", vol, &sel));
        }
        assert_eq!(whole, parts);
    }

    #[test]
    fn empty_ratio_empties_some_minutes_deterministically() {
        let vol = ZoneVolume {
            records_per_minute: 10,
            empty_ratio: 0.5,
            late_ratio: 0.0,
            late_max_seconds: 0,
        };
        let g = Generator::new(5);
        let counts: Vec<u64> = (0..200)
            .map(|m| g.minute_count("z", MINUTE + m, &vol))
            .collect();
        let empty = counts.iter().filter(|&&c| c == 0).count();
        assert!((60..140).contains(&empty), "{empty} empty minutes of 200");
        let again: Vec<u64> = (0..200)
            .map(|m| g.minute_count("z", MINUTE + m, &vol))
            .collect();
        assert_eq!(counts, again);
    }

    #[test]
    fn ray_ids_look_up_the_record_they_name() {
        let vol = ZoneVolume {
            records_per_minute: 20,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        };
        let g = Generator::new(9);
        let mut sel = selection(MINUTE, 1);
        sel.fields = vec![Field::RayID, Field::ClientIP, Field::EdgeEndTimestamp];
        let body = g.window_body("z", vol, &sel);
        let first = body.split(|&b| b == b'\n').next().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(first).expect("json");
        let ray = v["RayID"].as_str().expect("ray").to_owned();
        let mut out = Vec::new();
        assert!(g.lookup_ray("z", &ray, &vol, &sel.fields, sel.timestamps, &mut out));
        assert_eq!(&out[..out.len() - 1], first);
        assert!(!g.lookup_ray(
            "other",
            &ray,
            &vol,
            &sel.fields,
            sel.timestamps,
            &mut Vec::new()
        ));
        assert!(!g.lookup_ray(
            "z",
            "zz",
            &vol,
            &sel.fields,
            sel.timestamps,
            &mut Vec::new()
        ));
    }

    #[test]
    fn timestamps_render_in_all_three_formats() {
        let mut out = Vec::new();
        timestamp(
            &mut out,
            1_700_000_000_123_456_789,
            TimestampFormat::UnixNano,
        );
        out.push(b' ');
        timestamp(&mut out, 1_700_000_000_123_456_789, TimestampFormat::Unix);
        out.push(b' ');
        timestamp(
            &mut out,
            1_700_000_000_123_456_789,
            TimestampFormat::Rfc3339,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "1700000000123456789 1700000000 \"2023-11-14T22:13:20Z\""
        );
    }
}
