//! The committed test vectors (shared/sealed/tests/vectors/, described in docs/FORMAT.md §10)
//! reproduce: every object opens to its plaintext (or fails with its documented error),
//! and the positive ones re-seal byte for byte from the recorded inputs.
//!
//! Regenerate (only when the format changes, with a new format version):
//! `RAINLOGS_WRITE_VECTORS=1 cargo test -p rainlogs-sealed --test sealed vectors`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use hkdf::Hkdf;
use rainlogs_core::error::Classify;
use rainlogs_sealed::kms::{GeneratedDataKey, SecretKey, TenantKey};
use rainlogs_sealed::seal::seal_to_vec;
use rainlogs_sealed::{open_with_tenant_key, SealContext, SealParams, SealedHeader, HEADER_LEN};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const TENANT_KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn context() -> SealContext {
    SealContext {
        tenant: Uuid::parse_str("5b0d7c8e-3f1a-4a6b-9c2d-1e0f3a4b5c6d").unwrap(),
        zone: Uuid::parse_str("0a1b2c3d-4e5f-4061-8273-a4b5c6d7e8f9").unwrap(),
        window_start: "2026-11-30T08:00:00Z".parse().unwrap(),
        window_end: "2026-11-30T08:01:00Z".parse().unwrap(),
    }
}

fn record(i: u32) -> String {
    format!(
        r#"{{"BotScore":{},"CacheCacheStatus":"hit","ClientCountry":"de","ClientIP":"203.0.113.{}","ClientRequestHost":"www.example.eu","ClientRequestMethod":"GET","ClientRequestURI":"/static/app.{}.js","EdgeEndTimestamp":"2026-11-30T08:00:{:02}Z","EdgeResponseBytes":{},"EdgeResponseStatus":200,"RayID":"8f{:014x}"}}"#,
        i * 7 % 100,
        i % 250,
        i,
        i % 60,
        1000 + i * 37,
        u64::from(i) * 0x1234_5677
    )
}

/// name, chunk size, plaintext, tamper (None = positive vector), expected error code.
type Case = (
    &'static str,
    u32,
    Vec<u8>,
    Option<fn(&mut Vec<u8>)>,
    Option<&'static str>,
);

fn cases() -> Vec<Case> {
    let multi: String = (0..12).map(|i| record(i) + "\n").collect();
    vec![
        ("empty", 64, Vec::new(), None, None),
        (
            "one-record",
            65536,
            (record(1) + "\n").into_bytes(),
            None,
            None,
        ),
        ("multi-chunk", 64, multi.clone().into_bytes(), None, None),
        (
            "unterminated",
            64,
            b"{\"a\":1}\n{\"b\":2}".to_vec(),
            None,
            None,
        ),
        (
            "neg-header-flip",
            64,
            multi.clone().into_bytes(),
            Some(|o: &mut Vec<u8>| o[70] ^= 1),
            Some("sealed.header_tampered"),
        ),
        (
            "neg-body-flip",
            64,
            multi.clone().into_bytes(),
            Some(|o: &mut Vec<u8>| o[HEADER_LEN + 80 + 5] ^= 1),
            Some("sealed.chunk_tampered"),
        ),
        (
            "neg-swapped",
            64,
            multi.clone().into_bytes(),
            Some(|o: &mut Vec<u8>| {
                let a = o[HEADER_LEN..HEADER_LEN + 80].to_vec();
                let b = o[HEADER_LEN + 80..HEADER_LEN + 160].to_vec();
                o[HEADER_LEN..HEADER_LEN + 80].copy_from_slice(&b);
                o[HEADER_LEN + 80..HEADER_LEN + 160].copy_from_slice(&a);
            }),
            Some("sealed.chunks_reordered"),
        ),
        (
            "neg-truncated",
            64,
            multi.into_bytes(),
            Some(|o: &mut Vec<u8>| o.truncate(o.len() - 20)),
            Some("sealed.truncated"),
        ),
    ]
}

fn tenant_key() -> TenantKey {
    TenantKey::new(
        context().tenant,
        1,
        SecretKey::from_hex("test", TENANT_KEY_HEX).unwrap(),
    )
}

/// Fixed per-vector inputs derived from its index (test keys, never real ones).
fn inputs(i: usize) -> ([u8; 32], [u8; 16], [u8; 12]) {
    let b = i as u8;
    ([0x40 + b; 32], [0x80 + b; 16], [0xc0 + b; 12])
}

fn seal_case(i: usize, chunk: u32, plain: &[u8]) -> Vec<u8> {
    let (dk, salt, nonce) = inputs(i);
    let tk = tenant_key();
    let key = SecretKey::from_bytes(dk);
    let generated = GeneratedDataKey {
        wrapped: tk.wrap_data_key_with_nonce(&context(), &key, nonce),
        key,
        tenant_key_version: 1,
    };
    let params = SealParams::new(context(), &generated)
        .chunk_size(chunk)
        .salt(salt);
    seal_to_vec(plain, params).unwrap().0
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn write_vectors() {
    std::fs::create_dir_all(dir()).unwrap();
    std::fs::write(
        dir().join("tenant-key.json"),
        tenant_key().to_key_file().as_bytes(),
    )
    .unwrap();
    let ctx = context();
    let mut list = Vec::new();
    for (i, (name, chunk, plain, tamper, error)) in cases().into_iter().enumerate() {
        let mut object = seal_case(i, chunk, &plain);
        let header = SealedHeader::parse(&object).unwrap();
        let (dk, salt, nonce) = inputs(i);
        let hk = Hkdf::<Sha256>::new(Some(&salt), &dk);
        let (mut k_hdr, mut k_pay) = ([0u8; 32], [0u8; 32]);
        hk.expand(b"rainlogs sealed v1 header-tag", &mut k_hdr)
            .unwrap();
        hk.expand(b"rainlogs sealed v1 payload", &mut k_pay)
            .unwrap();
        if let Some(t) = tamper {
            t(&mut object);
        }
        std::fs::write(dir().join(format!("{name}.sealed")), &object).unwrap();
        std::fs::write(dir().join(format!("{name}.ndjson")), &plain).unwrap();
        let records = memchr_count(&plain);
        list.push(json!({
            "name": name,
            "expect_error": error,
            "tenant_id": ctx.tenant,
            "tenant_key_version": 1,
            "zone_id": ctx.zone,
            "window_start": ctx.window_start.to_rfc3339(),
            "window_end": ctx.window_end.to_rfc3339(),
            "window_start_micros": micros(ctx.window_start),
            "window_end_micros": micros(ctx.window_end),
            "chunk_size": chunk,
            "data_key_hex": hex::encode(dk),
            "salt_hex": hex::encode(salt),
            "wrap_nonce_hex": hex::encode(nonce),
            "header_tag_key_hex": hex::encode(k_hdr),
            "payload_key_hex": hex::encode(k_pay),
            "header_tag_hex": hex::encode(header.tag),
            "record_count": records,
            "plaintext_len": plain.len(),
            "plaintext_sha256": hex::encode(Sha256::digest(&plain)),
            "object_len": object.len(),
            "object_sha256": hex::encode(Sha256::digest(&object)),
        }));
    }
    let doc = json!({
        "format": "rainlogs sealed v1 test vectors",
        "tenant_key_file": "tenant-key.json",
        "vectors": list,
    });
    std::fs::write(
        dir().join("vectors.json"),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
}

fn memchr_count(plain: &[u8]) -> u64 {
    let nl = plain.iter().filter(|b| **b == b'\n').count() as u64;
    nl + u64::from(plain.last().is_some_and(|b| *b != b'\n'))
}

#[test]
fn committed_vectors_reproduce() {
    if std::env::var_os("RAINLOGS_WRITE_VECTORS").is_some() {
        write_vectors();
    }
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir().join("vectors.json")).unwrap()).unwrap();
    let key_file = std::fs::read_to_string(dir().join("tenant-key.json")).unwrap();
    let tk = TenantKey::from_key_file(&key_file).unwrap();
    let cases = cases();
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), cases.len());
    for (i, v) in vectors.iter().enumerate() {
        let name = v["name"].as_str().unwrap();
        let object = std::fs::read(dir().join(format!("{name}.sealed"))).unwrap();
        let plain = std::fs::read(dir().join(format!("{name}.ndjson"))).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&object)),
            v["object_sha256"],
            "{name}"
        );
        assert_eq!(
            hex::encode(Sha256::digest(&plain)),
            v["plaintext_sha256"],
            "{name}"
        );
        let expected_ctx = SealContext {
            tenant: v["tenant_id"].as_str().unwrap().parse().unwrap(),
            zone: v["zone_id"].as_str().unwrap().parse().unwrap(),
            window_start: DateTime::from_timestamp_micros(
                v["window_start_micros"].as_i64().unwrap(),
            )
            .unwrap(),
            window_end: DateTime::from_timestamp_micros(v["window_end_micros"].as_i64().unwrap())
                .unwrap(),
        };
        let result = open_with_tenant_key(&object[..], &tk, Some(&expected_ctx)).and_then(|o| {
            let mut out = Vec::new();
            o.copy_to(&mut out).map(|s| (out, s))
        });
        match v["expect_error"].as_str() {
            Some(code) => {
                let err = result.err().unwrap_or_else(|| panic!("{name}: opened"));
                assert_eq!(err.code(), code, "{name}: {err}");
            }
            None => {
                let (out, summary) = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(out, plain, "{name}");
                assert_eq!(
                    summary.record_count,
                    v["record_count"].as_u64().unwrap(),
                    "{name}"
                );
                // Byte-for-byte re-seal from the recorded inputs.
                let (_, chunk, case_plain, _, _) = &cases[i];
                assert_eq!(
                    case_plain, &plain,
                    "{name}: plaintext drifted from the generator"
                );
                assert_eq!(
                    seal_case(i, *chunk, &plain),
                    object,
                    "{name}: re-seal differs"
                );
            }
        }
    }
}
