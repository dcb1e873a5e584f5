//! The simulator's Logpush delivery: a clock, one task per enabled job, batches cut
//! from the deterministic [`Generator`] by the job's limits, gzip NDJSON POSTed to the
//! job's HTTP destination with its `header_*` headers, Cloudflare-like retries that give
//! up after a bounded time, faults, and a record of what was delivered and dropped.
//!
//! **Batches.** A job keeps a cursor in log time. Whenever the clock has passed
//! `cursor + max_upload_interval_seconds`, the records of `[cursor, cursor + interval)`
//! (selected by `EdgeEndTimestamp`, as Logpull selects them) are cut into batches of at
//! most `max_upload_records` lines and `max_upload_bytes` bytes of NDJSON, delivered in
//! order, and the cursor moves on. An empty interval sends nothing. So the records a job
//! delivers are exactly the generator's records from the moment it was enabled, each in
//! one batch — what a test compares the archive with.
//!
//! **Retries.** A failed attempt (no answer, a broken connection, any non-2xx) sets the
//! job's `last_error` and `error_message` and is retried after `retry_base`, doubling up
//! to `retry_cap` (a `Retry-After` is honoured, capped), until `give_up_after` has
//! passed since the first attempt: then the batch is dropped — Logpush cannot backfill
//! — and counted in [`JobStats`]. A success clears `last_error` and `error_message`;
//! `last_complete` is the end of the last interval whose batches all arrived.
//!
//! **Time.** [`PushClock::Realtime`] follows this host's clock (the binary, the demo).
//! [`PushClock::Manual`] stands still until [`Pusher::advance`] (or
//! `POST /__sim/logpush/clock`) moves it; [`Pusher::settled`] then waits until every
//! enabled job has delivered (or dropped) what is due — tests wait on that condition,
//! never on wall time. Retry back-off runs on real time, set small in tests.
//!
//! A batch is produced twice — once to measure where it ends, once as the request body
//! (again for each retry, from a clone of the generator's position) — so memory stays
//! at a chunk whatever the batch size (the 1 GB batch of the benchmark included).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Serialize;
use tokio::sync::watch;

use crate::generator::{Generator, Selection, WindowRecords};
use crate::logpush::{
    delivery_spec, job_from_create, job_updated, ApiError, DeliverySpec, Destination,
    HttpDestination, Job, JobBody,
};
use crate::push_faults::{PushFault, PushFaultBook, PushFaultRule};
use crate::s3_destination;
use crate::server::Volumes;

/// How far past the cursor a huge batch may reach for records.
const HUGE_REACH_NS: i64 = 30 * 24 * 3600 * 1_000_000_000;
/// Dropped batches listed individually in [`JobStats::dropped`] (the counts go on).
pub const MAX_DROPPED_LISTED: usize = 1000;
/// The validation upload Cloudflare sends when a job is created.
pub const VALIDATION_BODY: &[u8] = br#"{"content":"tests"}"#;

/// Where the pusher's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushClock {
    /// This host's clock.
    Realtime,
    /// Starts at `start` and moves only when advanced.
    Manual { start: DateTime<Utc> },
}

/// How the simulated Logpush delivers.
#[derive(Debug, Clone)]
pub struct PushConfig {
    pub clock: PushClock,
    /// First pause after a failed attempt; doubled after each further failure.
    pub retry_base: Duration,
    /// The longest pause between attempts (also caps a `Retry-After`).
    pub retry_cap: Duration,
    /// A batch still failing this long after its first attempt is dropped.
    pub give_up_after: Duration,
    pub connect_timeout: Duration,
    /// The whole of one attempt, body included.
    pub request_timeout: Duration,
    /// Plain `http://` destinations beyond loopback (Cloudflare: HTTPS only).
    pub allow_http: bool,
    pub faults: Vec<PushFaultRule>,
    /// Extra trusted roots (PEM) for HTTPS destinations with a test certificate.
    pub root_certificates_pem: Option<Vec<u8>>,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            clock: PushClock::Realtime,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(60),
            // "Around five times over five minutes" (Cloudflare's Logpush FAQ).
            give_up_after: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(600),
            allow_http: false,
            faults: Vec::new(),
            root_certificates_pem: None,
        }
    }
}

/// A batch the pusher gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedBatch {
    /// `EdgeEndTimestamp` (ns) of its first and last record.
    pub first_ns: i64,
    pub last_ns: i64,
    pub records: u64,
    /// NDJSON bytes.
    pub bytes: u64,
    /// The last attempt's error.
    pub error: String,
}

/// What one job delivered, retried and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobStats {
    pub zone: String,
    pub validation_uploads: u64,
    pub batches_delivered: u64,
    pub records_delivered: u64,
    /// NDJSON bytes of delivered batches.
    pub bytes_delivered: u64,
    pub attempts: u64,
    pub failed_attempts: u64,
    /// Extra deliveries of an acknowledged batch (the `duplicate` fault).
    pub duplicates_sent: u64,
    pub batches_dropped: u64,
    pub records_dropped: u64,
    pub bytes_dropped: u64,
    /// The first [`MAX_DROPPED_LISTED`] dropped batches.
    pub dropped: Vec<DroppedBatch>,
    /// Records ending before this (ns) are delivered or dropped.
    pub cursor_ns: i64,
}

/// The simulated clock.
struct Clock {
    manual: Option<Mutex<i64>>,
}

impl Clock {
    fn now_ns(&self) -> i64 {
        match &self.manual {
            Some(m) => *crate::server::lock(m),
            None => ns(Utc::now()),
        }
    }
}

fn ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn time(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// One job as the pusher keeps it.
struct Entry {
    zone: String,
    job: Job,
    spec: DeliverySpec,
    cursor_ns: i64,
    /// Bumped on every enable and disable: a delivery task of an older generation stops.
    generation: u64,
    /// The job's task is waiting for the clock (nothing of its generation in flight).
    idle: bool,
    stats: JobStats,
}

/// The Logpush side of a simulator: its jobs and their delivery tasks.
pub struct Pusher {
    me: Weak<Pusher>,
    generator: Generator,
    volumes: Volumes,
    config: PushConfig,
    faults: PushFaultBook,
    clock: Clock,
    http: reqwest::Client,
    gzip_level: u32,
    chunk_size: usize,
    jobs: Mutex<BTreeMap<u64, Entry>>,
    next_id: AtomicU64,
    /// Bumped when the clock moves or a job changes: delivery tasks look again.
    epoch: watch::Sender<u64>,
    /// Bumped when a delivery task goes idle: [`Pusher::settled`] looks again.
    progress: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
}

/// Why a delivery attempt failed.
struct Failure {
    message: String,
    retry_after: Option<Duration>,
}

impl Pusher {
    pub(crate) fn new(
        generator: Generator,
        volumes: Volumes,
        mut config: PushConfig,
        gzip_level: u32,
        chunk_size: usize,
    ) -> Result<Arc<Self>, String> {
        let mut http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            // A destination's secret headers go to its own URL only.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("rainlogs-logpull-sim (Logpush)");
        if let Some(pem) = &config.root_certificates_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("push root certificates: {e}"))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| format!("push HTTP client: {e}"))?;
        let clock = Clock {
            manual: match config.clock {
                PushClock::Manual { start } => Some(Mutex::new(ns(start))),
                PushClock::Realtime => None,
            },
        };
        let faults = PushFaultBook::new(std::mem::take(&mut config.faults));
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            generator,
            volumes,
            config,
            faults,
            clock,
            http,
            gzip_level: gzip_level.min(9),
            chunk_size: chunk_size.max(1024),
            jobs: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            epoch: watch::channel(0).0,
            progress: watch::channel(0).0,
            shutdown: watch::channel(false).0,
        }))
    }

    pub fn faults(&self) -> &PushFaultBook {
        &self.faults
    }

    /// The simulated now.
    pub fn now(&self) -> DateTime<Utc> {
        time(self.clock.now_ns())
    }

    /// Whether the clock is manual.
    pub fn manual_clock(&self) -> bool {
        self.clock.manual.is_some()
    }

    /// Moves a manual clock forward by `by`; returns the new now. A real-time clock
    /// cannot be moved.
    pub fn advance(&self, by: Duration) -> Result<DateTime<Utc>, String> {
        let Some(m) = &self.clock.manual else {
            return Err("the push clock follows real time; start the simulator with a manual clock to move it".into());
        };
        let step = i64::try_from(by.as_nanos()).map_err(|_| "step too large".to_owned())?;
        let now = {
            let mut now = crate::server::lock(m);
            *now = now.saturating_add(step);
            *now
        };
        self.epoch.send_modify(|n| *n += 1);
        Ok(time(now))
    }

    /// Waits until every enabled job has delivered or dropped everything the clock made
    /// due (with a manual clock: everything up to now).
    pub async fn settled(&self) {
        let mut progress = self.progress.subscribe();
        loop {
            let now = self.clock.now_ns();
            let done = self.lock().values().all(|e| {
                !e.job.enabled || (e.idle && e.cursor_ns.saturating_add(e.spec.interval_ns()) > now)
            });
            if done || progress.changed().await.is_err() {
                return;
            }
        }
    }

    /// Each job's delivery record, by job id.
    pub fn stats(&self) -> BTreeMap<u64, JobStats> {
        self.lock()
            .iter()
            .map(|(id, e)| {
                let mut s = e.stats.clone();
                s.cursor_ns = e.cursor_ns;
                (*id, s)
            })
            .collect()
    }

    /// The jobs of `zone`, by id.
    pub fn jobs(&self, zone: &str) -> Vec<Job> {
        self.lock()
            .values()
            .filter(|e| e.zone == zone)
            .map(|e| e.job.clone())
            .collect()
    }

    pub fn job(&self, zone: &str, id: u64) -> Option<Job> {
        self.lock()
            .get(&id)
            .filter(|e| e.zone == zone)
            .map(|e| e.job.clone())
    }

    /// Creates a job after its destination accepted the validation upload.
    pub async fn create_job(&self, zone: &str, body: JobBody) -> Result<Job, ApiError> {
        let mut job = job_from_create(body)?;
        let spec = delivery_spec(&job, self.config.allow_http)?;
        self.validate(&spec.destination).await?;
        job.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cursor = self.start_cursor();
        let entry = Entry {
            zone: zone.to_owned(),
            job: job.clone(),
            spec,
            cursor_ns: cursor,
            generation: 1,
            idle: !job.enabled,
            stats: JobStats {
                zone: zone.to_owned(),
                validation_uploads: 1,
                ..JobStats::default()
            },
        };
        self.lock().insert(job.id, entry);
        if job.enabled {
            self.spawn(job.id, 1);
        }
        Ok(job)
    }

    /// Applies an update; `Ok(None)` if the zone has no such job. A job left enabled is
    /// validated again first; enabling one starts its delivery from now.
    pub async fn update_job(
        &self,
        zone: &str,
        id: u64,
        body: JobBody,
    ) -> Result<Option<Job>, ApiError> {
        let Some(current) = self.job(zone, id) else {
            return Ok(None);
        };
        let next = job_updated(&current, body)?;
        let spec = delivery_spec(&next, self.config.allow_http)?;
        if next.enabled {
            self.validate(&spec.destination).await?;
        }
        let start = self.start_cursor();
        let (job, spawn) = {
            let mut jobs = self.lock();
            let Some(e) = jobs.get_mut(&id).filter(|e| e.zone == zone) else {
                return Ok(None);
            };
            if next.enabled {
                e.stats.validation_uploads += 1;
            }
            let was_enabled = e.job.enabled;
            // Settings from the request, status as it is now (deliveries went on meanwhile).
            let status = (
                e.job.last_complete,
                e.job.last_error,
                e.job.error_message.clone(),
            );
            e.job = Job {
                last_complete: status.0,
                last_error: status.1,
                error_message: status.2,
                ..next
            };
            e.spec = spec;
            let mut spawn = None;
            if was_enabled != e.job.enabled {
                e.generation += 1;
                e.idle = !e.job.enabled;
                if e.job.enabled {
                    // Logpush cannot backfill: a re-enabled job starts from now.
                    e.cursor_ns = start;
                    spawn = Some(e.generation);
                }
            }
            (e.job.clone(), spawn)
        };
        if let Some(generation) = spawn {
            self.spawn(id, generation);
        }
        self.epoch.send_modify(|n| *n += 1);
        self.progress.send_modify(|n| *n += 1);
        Ok(Some(job))
    }

    /// Deletes a job; its delivery stops before the next batch.
    pub fn delete_job(&self, zone: &str, id: u64) -> bool {
        let removed = {
            let mut jobs = self.lock();
            match jobs.get(&id) {
                Some(e) if e.zone == zone => jobs.remove(&id).is_some(),
                _ => false,
            }
        };
        if removed {
            self.epoch.send_modify(|n| *n += 1);
            self.progress.send_modify(|n| *n += 1);
        }
        removed
    }

    /// Stops every delivery task.
    pub(crate) fn stop(&self) {
        self.shutdown.send_replace(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        crate::server::lock(&self.jobs)
    }

    /// A job starts at the current second.
    fn start_cursor(&self) -> i64 {
        let now = self.clock.now_ns();
        now - now.rem_euclid(1_000_000_000)
    }

    fn spawn(&self, id: u64, generation: u64) {
        if let Some(me) = self.me.upgrade() {
            tokio::spawn(me.run(id, generation));
        }
    }

    /// The job's zone, settings and cursor while `generation` is current.
    fn live(&self, id: u64, generation: u64) -> Option<(String, DeliverySpec, i64)> {
        let jobs = self.lock();
        let e = jobs.get(&id)?;
        (e.generation == generation && e.job.enabled)
            .then(|| (e.zone.clone(), e.spec.clone(), e.cursor_ns))
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.lock().get_mut(&id) {
            f(e);
        }
    }

    /// One job's delivery task: delivers every due interval, then waits for the clock.
    async fn run(self: Arc<Self>, id: u64, generation: u64) {
        let mut epoch = self.epoch.subscribe();
        let mut shutdown = self.shutdown.subscribe();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let Some((zone, spec, cursor)) = self.live(id, generation) else {
                return;
            };
            let now = self.clock.now_ns();
            let due = cursor.saturating_add(spec.interval_ns());
            if due <= now {
                self.update(id, |e| {
                    if e.generation == generation {
                        e.idle = false;
                    }
                });
                let outcome = tokio::select! {
                    o = self.deliver_interval(id, &zone, &spec, cursor, due) => o,
                    _ = shutdown.changed() => return,
                };
                self.update(id, |e| {
                    if e.generation != generation {
                        return;
                    }
                    e.cursor_ns = outcome.cursor_ns;
                    if outcome.complete {
                        e.job.last_complete = Some(time(outcome.cursor_ns));
                    }
                });
                continue;
            }
            self.update(id, |e| {
                if e.generation == generation {
                    e.idle = true;
                }
            });
            self.progress.send_modify(|n| *n += 1);
            let wait = match self.clock.manual {
                Some(_) => None,
                None => Some(Duration::from_nanos((due - now).max(0) as u64)),
            };
            tokio::select! {
                _ = epoch.changed() => {}
                _ = shutdown.changed() => return,
                _ = async {
                    match wait {
                        Some(w) => tokio::time::sleep(w).await,
                        None => std::future::pending::<()>().await,
                    }
                } => {}
            }
        }
    }

    fn selection(&self, spec: &DeliverySpec, from: i64, to: i64) -> Selection {
        Selection {
            start_ns: from,
            end_ns: to,
            fields: spec.fields.clone(),
            timestamps: spec.timestamps,
            count: None,
            sample: spec.sample,
            by_received: false,
        }
    }

    /// Delivers the records of `[from, to)` in batches; returns where the cursor goes.
    async fn deliver_interval(
        &self,
        id: u64,
        zone: &str,
        spec: &DeliverySpec,
        from: i64,
        to: i64,
    ) -> IntervalOutcome {
        let volume = self.volumes.get(zone);
        let window = |a: i64, b: i64| {
            Lines::new(
                self.generator
                    .window(zone, volume, self.selection(spec, a, b)),
            )
        };
        let mut lines = window(from, to);
        let mut outcome = IntervalOutcome {
            cursor_ns: to,
            complete: true,
        };
        loop {
            let fault = self.faults.take_batch(id, zone);
            let plan = match fault {
                Some(PushFault::HugeBatch { bytes }) => {
                    let start = lines.next_start_ns().unwrap_or(from);
                    let mut big = window(start, start.saturating_add(HUGE_REACH_NS));
                    let plan = Plan::measure(&mut big, None, None, Some(bytes));
                    // Go on after the huge batch's last record (maybe past `to`).
                    let next = big.next_start_ns().unwrap_or(to).max(start);
                    if next >= to {
                        outcome.cursor_ns = next;
                        lines = window(to, to);
                    } else {
                        lines = window(next, to);
                    }
                    plan
                }
                _ => Plan::measure(&mut lines, spec.max_records, spec.max_bytes, None),
            };
            let Some(plan) = plan else { break };
            match self.deliver_batch(id, zone, &spec.destination, &plan).await {
                Ok(()) => {
                    self.update(id, |e| {
                        e.stats.batches_delivered += 1;
                        e.stats.records_delivered += plan.records;
                        e.stats.bytes_delivered += plan.bytes;
                    });
                    if fault == Some(PushFault::Duplicate) {
                        let again = self.attempt(&spec.destination, &plan, None).await;
                        self.update(id, |e| {
                            e.stats.duplicates_sent += 1;
                            e.stats.attempts += 1;
                            if again.is_err() {
                                e.stats.failed_attempts += 1;
                            }
                        });
                    }
                }
                Err(error) => {
                    outcome.complete = false;
                    self.update(id, |e| {
                        e.stats.batches_dropped += 1;
                        e.stats.records_dropped += plan.records;
                        e.stats.bytes_dropped += plan.bytes;
                        if e.stats.dropped.len() < MAX_DROPPED_LISTED {
                            e.stats.dropped.push(DroppedBatch {
                                first_ns: plan.first_ns,
                                last_ns: plan.last_ns,
                                records: plan.records,
                                bytes: plan.bytes,
                                error,
                            });
                        }
                    });
                }
            }
        }
        outcome
    }

    /// Sends one batch until a 2xx or until `give_up_after`; `Err` is the last error.
    async fn deliver_batch(
        &self,
        id: u64,
        zone: &str,
        destination: &Destination,
        plan: &Plan,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.config.give_up_after;
        let mut pause = self.config.retry_base;
        loop {
            let fault = self.faults.take_attempt(id, zone);
            let result = self.attempt(destination, plan, fault).await;
            let now = self.now();
            match result {
                Ok(()) => {
                    self.update(id, |e| {
                        e.stats.attempts += 1;
                        e.job.last_error = None;
                        e.job.error_message = None;
                    });
                    return Ok(());
                }
                Err(failure) => {
                    self.update(id, |e| {
                        e.stats.attempts += 1;
                        e.stats.failed_attempts += 1;
                        e.job.last_error = Some(now);
                        e.job.error_message = Some(failure.message.clone());
                    });
                    let wait = failure
                        .retry_after
                        .map_or(pause, |r| r.min(self.config.retry_cap));
                    if Instant::now() + wait > deadline {
                        return Err(failure.message);
                    }
                    tokio::time::sleep(wait).await;
                    pause = (pause * 2).min(self.config.retry_cap);
                }
            }
        }
    }

    /// One HTTP attempt of a batch, with the attempt's fault.
    async fn attempt(
        &self,
        destination: &Destination,
        plan: &Plan,
        fault: Option<PushFault>,
    ) -> Result<(), Failure> {
        let body = BatchBody {
            lines: plan.start.clone(),
            left: plan.records,
            gzip: Some(GzEncoder::new(
                Vec::new(),
                Compression::new(self.gzip_level),
            )),
            sent: 0,
            reset_after: match fault {
                Some(PushFault::ResetMidBody { after_bytes }) => Some(after_bytes),
                _ => None,
            },
            delay: fault.as_ref().and_then(PushFault::chunk_delay),
            chunk_size: self.chunk_size,
            state: BodyState::Streaming,
        };
        let wrong_secret = fault == Some(PushFault::WrongSecret);
        match destination {
            Destination::Http(http) => {
                self.post(
                    http,
                    reqwest::Body::wrap_stream(body.into_stream()),
                    wrong_secret,
                )
                .await
            }
            Destination::S3(s3) => {
                let client = s3.client(wrong_secret, self.config.request_timeout);
                let key = s3.batch_key(plan.first_ns, plan.last_ns);
                s3_destination::write(&client, &s3.bucket, &key, body.into_stream())
                    .await
                    .map_err(|message| Failure {
                        message,
                        retry_after: None,
                    })
            }
        }
    }

    /// Sends the validation upload; anything but a 2xx (an HTTP destination) or a
    /// written object (S3) refuses the job (error 1002).
    async fn validate(&self, destination: &Destination) -> Result<(), ApiError> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        let body = gz
            .write_all(VALIDATION_BODY)
            .and_then(|()| gz.finish())
            .map_err(ApiError::destination)?;
        match destination {
            Destination::Http(http) => self
                .post(http, reqwest::Body::from(body), false)
                .await
                .map_err(|f| ApiError::destination(format!("error writing object: {}", f.message))),
            Destination::S3(s3) => {
                let client = s3.client(false, self.config.request_timeout);
                let chunk = futures::stream::once(async { Ok(Bytes::from(body)) });
                let key = s3.validation_key(self.now());
                s3_destination::write(&client, &s3.bucket, &key, chunk)
                    .await
                    .map_err(ApiError::destination)
            }
        }
    }

    async fn post(
        &self,
        destination: &HttpDestination,
        body: reqwest::Body,
        wrong_secret: bool,
    ) -> Result<(), Failure> {
        let mut req = self
            .http
            .post(&destination.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::CONTENT_ENCODING, "gzip");
        for (name, value) in &destination.headers {
            req = if wrong_secret {
                req.header(name, format!("{value}-not-the-secret"))
            } else {
                req.header(name, value)
            };
        }
        let resp = match req.body(body).send().await {
            Ok(resp) => resp,
            Err(e) => {
                return Err(Failure {
                    message: format!("error uploading: {}", chain(&e)),
                    retry_after: None,
                })
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let snippet: String = text.chars().take(200).collect();
        Err(Failure {
            message: format!("error uploading: HTTP {status}: {}", snippet.trim()),
            retry_after,
        })
    }
}

/// An error with its sources, one line (no URL secrets: `header_*` parameters are
/// never part of the URL posted to).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

struct IntervalOutcome {
    cursor_ns: i64,
    /// Every batch of the interval was acknowledged.
    complete: bool,
}

/// The generator's lines of a window, with one line of look-ahead put back when a
/// batch's byte limit would be passed. Cloning keeps the position.
#[derive(Debug, Clone)]
struct Lines {
    records: WindowRecords,
    pending: Option<(Vec<u8>, i64)>,
}

impl Lines {
    fn new(records: WindowRecords) -> Self {
        Self {
            records,
            pending: None,
        }
    }

    /// The next line and its `EdgeEndTimestamp` (ns).
    fn next_line(&mut self) -> Option<(Vec<u8>, i64)> {
        if let Some(p) = self.pending.take() {
            return Some(p);
        }
        let mut line = Vec::with_capacity(2048);
        if !self.records.write_next(&mut line) {
            return None;
        }
        let end = self.records.last_end_ns().unwrap_or_default();
        Some((line, end))
    }

    fn put_back(&mut self, line: (Vec<u8>, i64)) {
        self.pending = Some(line);
    }

    /// Where the lines not yet handed out begin, if any was produced.
    fn next_start_ns(&self) -> Option<i64> {
        match &self.pending {
            Some((_, end)) => Some(*end),
            None => self.records.last_end_ns().map(|t| t + 1),
        }
    }
}

/// A batch: where it starts, how many records and bytes it has.
struct Plan {
    start: Lines,
    records: u64,
    bytes: u64,
    first_ns: i64,
    last_ns: i64,
}

impl Plan {
    /// Takes the next batch off `lines`: at most `max_records` lines and `max_bytes`
    /// bytes (a single longer line still goes, alone), or — `at_least` — lines until that
    /// many bytes. `None` when no line is left.
    fn measure(
        lines: &mut Lines,
        max_records: Option<u64>,
        max_bytes: Option<u64>,
        at_least: Option<u64>,
    ) -> Option<Plan> {
        let start = lines.clone();
        let (mut records, mut bytes, mut first_ns, mut last_ns) = (0u64, 0u64, 0i64, 0i64);
        while max_records.is_none_or(|m| records < m) && at_least.is_none_or(|b| bytes < b) {
            let Some((line, end)) = lines.next_line() else {
                break;
            };
            let len = line.len() as u64;
            if records > 0 && max_bytes.is_some_and(|m| bytes + len > m) {
                lines.put_back((line, end));
                break;
            }
            if records == 0 {
                first_ns = end;
            }
            last_ns = end;
            records += 1;
            bytes += len;
        }
        (records > 0).then_some(Plan {
            start,
            records,
            bytes,
            first_ns,
            last_ns,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Streaming,
    ResetPending,
    Done,
}

/// Produces a batch's gzip body chunk by chunk, applying the attempt's fault.
struct BatchBody {
    lines: Lines,
    left: u64,
    gzip: Option<GzEncoder<Vec<u8>>>,
    /// Gzip bytes handed out so far.
    sent: u64,
    reset_after: Option<u64>,
    delay: Option<Duration>,
    chunk_size: usize,
    state: BodyState,
}

impl BatchBody {
    fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
        futures::stream::unfold(self, |mut b| async move {
            match b.state {
                BodyState::Done => return None,
                BodyState::ResetPending => {
                    // Give the partial body time to leave before the connection drops.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    b.state = BodyState::Done;
                    let e = std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "simulated connection reset",
                    );
                    return Some((Err(e), b));
                }
                BodyState::Streaming => {}
            }
            if let Some(d) = b.delay {
                tokio::time::sleep(d).await;
            }
            let chunk = b.next_chunk()?;
            Some((Ok(chunk), b))
        })
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.state != BodyState::Streaming {
                return None;
            }
            let mut raw = Vec::with_capacity(self.chunk_size + 4096);
            while self.left > 0 && raw.len() < self.chunk_size {
                match self.lines.next_line() {
                    Some((line, _)) => raw.extend_from_slice(&line),
                    None => self.left = 0,
                }
                self.left = self.left.saturating_sub(1);
            }
            let finished = self.left == 0;
            let mut out = crate::server::gzip_step(&mut self.gzip, raw, finished);
            if finished {
                self.state = BodyState::Done;
            }
            if let Some(after) = self.reset_after {
                if self.sent + out.len() as u64 >= after {
                    out.truncate(after.saturating_sub(self.sent) as usize);
                    self.sent += out.len() as u64;
                    self.state = BodyState::ResetPending;
                    return Some(Bytes::from(out));
                }
            }
            self.sent += out.len() as u64;
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::DEFAULT_FIELDS;
    use crate::generator::{TimestampFormat, ZoneVolume};

    fn lines(n: u64, minutes: i64) -> (Generator, Lines, Selection) {
        let g = Generator::new(3);
        let sel = Selection {
            start_ns: 0,
            end_ns: minutes * 60_000_000_000,
            fields: DEFAULT_FIELDS.to_vec(),
            timestamps: TimestampFormat::UnixNano,
            count: None,
            sample: None,
            by_received: false,
        };
        let vol = ZoneVolume {
            records_per_minute: n,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        };
        (g, Lines::new(g.window("z", vol, sel.clone())), sel)
    }

    fn body_of(plan: &Plan) -> Vec<u8> {
        let mut l = plan.start.clone();
        let mut out = Vec::new();
        for _ in 0..plan.records {
            out.extend_from_slice(&l.next_line().unwrap().0);
        }
        out
    }

    #[test]
    fn batches_split_by_records_and_bytes_and_cover_the_window_once() {
        let (g, mut l, sel) = lines(2500, 1);
        let whole = g.window_body(
            "z",
            ZoneVolume {
                records_per_minute: 2500,
                empty_ratio: 0.0,
                late_ratio: 0.0,
                late_max_seconds: 0,
            },
            &sel,
        );
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while let Some(plan) = Plan::measure(&mut l, Some(1000), Some(1_500_000), None) {
            assert!(plan.bytes <= 1_500_000);
            sizes.push(plan.records);
            got.extend(body_of(&plan));
        }
        assert_eq!(got, whole, "the batches are the window, in order, once");
        assert!(
            sizes.len() >= 3 && sizes.iter().all(|&n| n <= 1000),
            "{sizes:?}"
        );
    }

    #[test]
    fn a_huge_batch_grows_to_its_size_and_says_where_it_ended() {
        let (_, mut l, _) = lines(100, 60);
        let plan = Plan::measure(&mut l, None, None, Some(1_000_000)).unwrap();
        assert!(plan.bytes >= 1_000_000 && plan.records > 100);
        assert_eq!(l.next_start_ns(), Some(plan.last_ns + 1));
    }

    #[test]
    fn the_body_is_the_gzip_of_the_batch_and_a_reset_cuts_it() {
        let (_, mut l, _) = lines(3000, 1);
        let plan = Plan::measure(&mut l, Some(2000), None, None).unwrap();
        let body = |reset_after| BatchBody {
            lines: plan.start.clone(),
            left: plan.records,
            gzip: Some(GzEncoder::new(Vec::new(), Compression::new(1))),
            sent: 0,
            reset_after,
            delay: None,
            chunk_size: 16 * 1024,
            state: BodyState::Streaming,
        };
        let mut whole = body(None);
        let mut gz = Vec::new();
        while let Some(c) = whole.next_chunk() {
            gz.extend_from_slice(&c);
        }
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
        assert_eq!(plain, body_of(&plan));
        let mut cut = body(Some(5000));
        let mut sent = 0;
        while let Some(c) = cut.next_chunk() {
            sent += c.len();
        }
        assert_eq!((sent, cut.state), (5000, BodyState::ResetPending));
    }
}
