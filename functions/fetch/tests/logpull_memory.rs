//! A large window streams through the client in bounded memory.
//!
//! A counting global allocator records the peak heap while ~100 MB of gzip-encoded
//! NDJSON flows from the in-process simulator through the client into a discarding
//! sink. The assertion is on bytes seen and peak heap, never on time. This file holds
//! one test so no other test's allocations share the counter.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DurationRound, TimeDelta, Utc};
use rainlogs_fetch::logpull::{
    Credentials, LogpullClient, LogpullConfig, RetryPolicy, WindowRequest, ZoneId,
};
use rainlogs_logpull_sim::{Field, SimConfig, Simulator, ZoneVolume};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = CURRENT.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size >= layout.size() {
            grew(new_size - layout.size());
        } else {
            CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const ZONE: &str = "00112233445566778899aabbccddeeff";
const RECORDS: u64 = 48_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_window_streams_in_bounded_memory() {
    let sim = Simulator::start_local(SimConfig {
        default_volume: ZoneVolume {
            records_per_minute: RECORDS,
            empty_ratio: 0.0,
            late_ratio: 0.0,
            late_max_seconds: 0,
        },
        tokens: vec!["t".to_owned()],
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let client = LogpullClient::new(
        LogpullConfig {
            base_url: sim.base_url(),
            retry: RetryPolicy::none(),
            ..LogpullConfig::default()
        },
        &Credentials::token("t"),
    )
    .expect("client");
    let end = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("trunc")
        - TimeDelta::minutes(3);
    let req = WindowRequest::new(
        ZoneId::parse(ZONE).expect("zone"),
        end - TimeDelta::minutes(1),
        end,
    )
    .fields(Field::ALL.iter().map(|f| f.name()));

    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut sink = tokio::io::sink();
    let summary = client.fetch_into(&req, &mut sink).await.expect("window");
    let peak_growth = PEAK.load(Ordering::Relaxed).saturating_sub(base);

    assert_eq!(summary.records, RECORDS);
    assert!(summary.gzip);
    assert!(
        summary.raw_bytes > 80 * 1024 * 1024,
        "only {} raw bytes",
        summary.raw_bytes
    );
    assert!(
        peak_growth < 16 * 1024 * 1024,
        "peak heap grew by {peak_growth} bytes for a {} byte window",
        summary.raw_bytes
    );
    println!(
        "streamed {} raw bytes ({} on the wire) with peak heap growth {} bytes",
        summary.raw_bytes, summary.wire_bytes, peak_growth
    );
}
