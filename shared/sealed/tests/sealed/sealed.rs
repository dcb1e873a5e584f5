//! The sealed format as a specification: round trips at every size that matters, and
//! each way an object can be damaged answered by its own typed error.

use std::io::{Read, Write};

use chrono::{TimeZone, Utc};
use rainlogs_sealed::header::TAG_OFFSET;
use rainlogs_sealed::kms::{GeneratedDataKey, KeyError, Kms, SecretKey, StaticKms, TenantKey};
use rainlogs_sealed::{
    open_with_kms, open_with_tenant_key, SealContext, SealError, SealParams, SealedHeader, Sealer,
    DEFAULT_CHUNK_SIZE, FOOTER_LEN, HEADER_LEN, TAG_LEN, TRAILER_LEN,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

fn context() -> SealContext {
    SealContext {
        tenant: Uuid::from_u128(0x1111),
        zone: Uuid::from_u128(0x2222),
        window_start: Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap(),
        window_end: Utc.with_ymd_and_hms(2026, 11, 30, 8, 1, 0).unwrap(),
    }
}

fn tenant_key(version: u32) -> TenantKey {
    TenantKey::new(context().tenant, version, SecretKey::random())
}

fn data_key(tk: &TenantKey, ctx: &SealContext) -> GeneratedDataKey {
    let key = SecretKey::random();
    GeneratedDataKey {
        wrapped: tk.wrap_data_key(ctx, &key),
        key,
        tenant_key_version: tk.version,
    }
}

fn seal(tk: &TenantKey, plain: &[u8], chunk: u32) -> Vec<u8> {
    let ctx = context();
    let dk = data_key(tk, &ctx);
    let mut sealer = Sealer::new(Vec::new(), SealParams::new(ctx, &dk).chunk_size(chunk)).unwrap();
    sealer.write_all(plain).unwrap();
    let (out, summary) = sealer.finish().unwrap();
    assert_eq!(summary.object_len as usize, out.len());
    assert_eq!(summary.plaintext_len as usize, plain.len());
    out
}

fn open(tk: &TenantKey, object: &[u8]) -> Result<Vec<u8>, SealError> {
    let opener = open_with_tenant_key(object, tk, Some(&context()))?;
    let mut out = Vec::new();
    opener.copy_to(&mut out)?;
    Ok(out)
}

/// Cloudflare-like NDJSON, deterministic, `n` bytes (the last record may be cut).
fn ndjson(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 300);
    let mut i = 0u64;
    while out.len() < n {
        writeln!(
            out,
            r#"{{"RayID":"{:016x}","ClientIP":"10.{}.{}.{}","EdgeResponseStatus":{},"ClientRequestURI":"/p/{}"}}"#,
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i % 256,
            (i / 7) % 256,
            (i / 13) % 256,
            [200, 301, 404, 500][(i % 4) as usize],
            i
        )
        .unwrap();
        i += 1;
    }
    out.truncate(n);
    out
}

/// Bytes zstd cannot shrink, so the payload length tracks the plaintext length.
fn incompressible(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn round_trips_at_edge_sizes() {
    let tk = tenant_key(1);
    let c = DEFAULT_CHUNK_SIZE as usize;
    for n in [0, 1, c - 1, c, c + 1, 3 * c + 17] {
        for plain in [ndjson(n), incompressible(n, n as u64)] {
            let object = seal(&tk, &plain, DEFAULT_CHUNK_SIZE);
            assert_eq!(open(&tk, &object).unwrap(), plain, "size {n}");
        }
    }
}

#[test]
fn payload_lengths_around_every_chunk_boundary_round_trip() {
    // With 64-byte chunks and incompressible input, the compressed payload crosses
    // every residue modulo the chunk size.
    let tk = tenant_key(1);
    for n in 0..400 {
        let plain = incompressible(n, 7 + n as u64);
        let object = seal(&tk, &plain, 64);
        assert_eq!(open(&tk, &object).unwrap(), plain, "size {n}");
    }
}

#[test]
fn summary_counts_records_and_hashes_plaintext() {
    let tk = tenant_key(1);
    let ctx = context();
    let dk = data_key(&tk, &ctx);
    for (plain, records) in [
        (&b""[..], 0),
        (b"{}\n", 1),
        (b"{}\n{}", 2),
        (b"{}\n{}\n", 2),
    ] {
        let mut sealer = Sealer::new(Vec::new(), SealParams::new(ctx, &dk)).unwrap();
        sealer.write_all(plain).unwrap();
        let (object, summary) = sealer.finish().unwrap();
        assert_eq!(summary.record_count, records);
        assert_eq!(
            summary.plaintext_sha256,
            <[u8; 32]>::from(Sha256::digest(plain))
        );
        assert_eq!(
            summary.object_sha256,
            <[u8; 32]>::from(Sha256::digest(&object))
        );
        let opener = open_with_tenant_key(&object[..], &tk, None).unwrap();
        let opened = opener.copy_to(&mut Vec::new()).unwrap();
        assert_eq!(opened.record_count, records);
        assert_eq!(opened.plaintext_sha256, summary.plaintext_sha256);
    }
}

/// Streams `total` bytes of NDJSON through seal and open without holding either.
#[test]
fn hundred_mib_stream_round_trips_in_bounded_memory() {
    const TOTAL: usize = 100 * 1024 * 1024;
    let tk = tenant_key(1);
    let ctx = context();
    let dk = data_key(&tk, &ctx);
    let block = ndjson(1024 * 1024);
    let mut sealer = Sealer::new(Vec::new(), SealParams::new(ctx, &dk)).unwrap();
    let mut expected = Sha256::new();
    let mut written = 0;
    let mut i = 0u32;
    while written < TOTAL {
        // Vary each block so zstd cannot fold the whole stream into one match.
        let mut b = block.clone();
        b[..4].copy_from_slice(&i.to_be_bytes());
        sealer.write_all(&b).unwrap();
        expected.update(&b);
        written += b.len();
        i += 1;
    }
    let (object, summary) = sealer.finish().unwrap();
    assert_eq!(summary.plaintext_len as usize, TOTAL);
    let mut opener = open_with_tenant_key(&object[..], &tk, Some(&ctx)).unwrap();
    let mut got = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n_total = 0;
    loop {
        let n = opener.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.update(&buf[..n]);
        n_total += n;
    }
    assert_eq!(n_total, TOTAL);
    assert_eq!(got.finalize(), expected.finalize());
    assert_eq!(
        opener.summary().unwrap().plaintext_sha256,
        summary.plaintext_sha256
    );
}

// ---- tampering -------------------------------------------------------------------

/// A three-plus-chunk object with chunk size 256 (incompressible, so chunks are full).
fn multi_chunk(tk: &TenantKey) -> Vec<u8> {
    seal(tk, &incompressible(1000, 3), 256)
}

const CHUNK: usize = 256 + TAG_LEN;

fn flip(object: &[u8], at: usize) -> Vec<u8> {
    let mut o = object.to_vec();
    o[at] ^= 0x04;
    o
}

#[test]
fn header_bit_flips_fail_header_authentication() {
    let tk = tenant_key(1);
    let object = multi_chunk(&tk);
    // Every bit of every authenticated header field past the fixed prefix.
    for at in 16..HEADER_LEN {
        for bit in 0..8 {
            let mut o = object.clone();
            o[at] ^= 1 << bit;
            let err = open_with_tenant_key(&o[..], &tk, None).err();
            assert!(
                matches!(
                    err,
                    Some(SealError::HeaderTampered { .. })
                        | Some(SealError::MalformedHeader { .. })
                        | Some(SealError::Key(KeyError::KeyFileMismatch { .. }))
                ),
                "byte {at} bit {bit}: {err:?}"
            );
        }
    }
    // A flip in the salt or the tag is found by the header tag itself.
    for at in [70, 100, TAG_OFFSET + 3] {
        assert!(matches!(
            open_with_tenant_key(&flip(&object, at)[..], &tk, None).err(),
            Some(SealError::HeaderTampered { .. })
        ));
    }
}

#[test]
fn prefix_damage_is_reported_as_what_it_is() {
    let tk = tenant_key(1);
    let object = multi_chunk(&tk);
    type Check = fn(&SealError) -> bool;
    let cases: [(usize, Check); 4] = [
        (0, |e| matches!(e, SealError::NotSealed)),
        (8, |e| matches!(e, SealError::UnsupportedVersion { .. })),
        (9, |e| matches!(e, SealError::UnsupportedAlgorithm { .. })),
        (11, |e| {
            matches!(
                e,
                SealError::MalformedHeader {
                    field: "header_len",
                    ..
                }
            )
        }),
    ];
    for (at, check) in cases {
        let err = open_with_tenant_key(&flip(&object, at)[..], &tk, None)
            .err()
            .unwrap();
        assert!(check(&err), "byte {at}: {err:?}");
    }
    assert!(matches!(
        open_with_tenant_key(&object[..100], &tk, None).err(),
        Some(SealError::TruncatedHeader { have: 100 })
    ));
}

#[test]
fn body_bit_flip_is_a_tampered_chunk() {
    let tk = tenant_key(1);
    let object = multi_chunk(&tk);
    let at = HEADER_LEN + CHUNK + 10; // inside chunk 1's ciphertext
    assert!(matches!(
        open(&tk, &flip(&object, at)),
        Err(SealError::ChunkTampered { index: 1 })
    ));
}

#[test]
fn tag_bit_flip_is_a_tampered_chunk() {
    let tk = tenant_key(1);
    let object = multi_chunk(&tk);
    let at = HEADER_LEN + CHUNK - 3; // inside chunk 0's tag
    assert!(matches!(
        open(&tk, &flip(&object, at)),
        Err(SealError::ChunkTampered { index: 0 })
    ));
    let last_tag = object.len() - FOOTER_LEN - 5;
    // The final chunk is 64..=C+64 bytes, so the body holds (body-64)/CHUNK others.
    let body = object.len() - HEADER_LEN - FOOTER_LEN;
    let final_index = ((body - TRAILER_LEN - TAG_LEN) / CHUNK) as u64;
    assert!(final_index >= 3);
    let err = open(&tk, &flip(&object, last_tag)).unwrap_err();
    assert!(
        matches!(err, SealError::ChunkTampered { index } if index == final_index),
        "{err:?}"
    );
}

#[test]
fn truncated_final_chunk_is_truncation() {
    let tk = tenant_key(1);
    let object = multi_chunk(&tk);
    for cut in [
        1,
        5,
        FOOTER_LEN,
        FOOTER_LEN + 1,
        40,
        TRAILER_LEN + TAG_LEN + FOOTER_LEN,
    ] {
        let err = open(&tk, &object[..object.len() - cut]).unwrap_err();
        assert!(
            matches!(err, SealError::Truncated { .. }),
            "cut {cut}: {err:?}"
        );
    }
    // Only the header left.
    assert!(matches!(
        open(&tk, &object[..HEADER_LEN]),
        Err(SealError::Truncated {
            declared: None,
            actual: 0
        })
    ));
}

#[test]
fn final_chunk_removed_with_forged_footer_is_a_missing_final_chunk() {
    let tk = tenant_key(1);
    let object = multi_chunk(&tk);
    let body = HEADER_LEN + 2 * CHUNK;
    let mut cut = object[..body].to_vec();
    cut.extend_from_slice(&((2 * CHUNK) as u64).to_be_bytes());
    assert!(matches!(
        open(&tk, &cut),
        Err(SealError::MissingFinalChunk { last_index: 1 })
    ));
}

#[test]
fn appended_bytes_are_trailing_data() {
    let tk = tenant_key(1);
    let mut object = multi_chunk(&tk);
    let footer = object.split_off(object.len() - FOOTER_LEN);
    object.extend_from_slice(&[0u8; 3]);
    object.extend_from_slice(&footer);
    assert!(matches!(
        open(&tk, &object),
        Err(SealError::TrailingData { .. })
    ));
}

#[test]
fn swapped_chunks_are_reordering() {
    let tk = tenant_key(1);
    let object = multi_chunk(&tk);
    let mut o = object.clone();
    let (a, b) = (HEADER_LEN, HEADER_LEN + CHUNK);
    let first = object[a..b].to_vec();
    o[a..b].copy_from_slice(&object[b..b + CHUNK]);
    o[b..b + CHUNK].copy_from_slice(&first);
    assert!(matches!(
        open(&tk, &o),
        Err(SealError::ChunksReordered {
            position: 0,
            belongs_at: 1
        })
    ));
    // Rotate chunks 0,1,2 → 2,0,1.
    let mut r = object.clone();
    let c = |i: usize| &object[HEADER_LEN + i * CHUNK..HEADER_LEN + (i + 1) * CHUNK];
    let rotated = [c(2), c(0), c(1)].concat();
    r[HEADER_LEN..HEADER_LEN + 3 * CHUNK].copy_from_slice(&rotated);
    assert!(matches!(
        open(&tk, &r),
        Err(SealError::ChunksReordered {
            position: 0,
            belongs_at: 2
        })
    ));
}

#[test]
fn chunk_from_another_object_is_tampering() {
    let tk = tenant_key(1);
    let a = multi_chunk(&tk);
    let b = multi_chunk(&tk);
    let mut o = a.clone();
    o[HEADER_LEN..HEADER_LEN + CHUNK].copy_from_slice(&b[HEADER_LEN..HEADER_LEN + CHUNK]);
    assert!(matches!(
        open(&tk, &o),
        Err(SealError::ChunkTampered { index: 0 })
    ));
}

#[test]
fn object_presented_as_another_tenant_zone_or_window_is_refused() {
    let tk = tenant_key(1);
    let object = multi_chunk(&tk);
    let mut other = context();
    other.tenant = Uuid::from_u128(9);
    assert!(matches!(
        open_with_tenant_key(&object[..], &tk, Some(&other)).err(),
        Some(SealError::WrongTenant { .. })
    ));
    let mut other = context();
    other.zone = Uuid::from_u128(9);
    assert!(matches!(
        open_with_tenant_key(&object[..], &tk, Some(&other)).err(),
        Some(SealError::WrongZone { .. })
    ));
    let mut other = context();
    other.window_end += chrono::Duration::seconds(60);
    assert!(matches!(
        open_with_tenant_key(&object[..], &tk, Some(&other)).err(),
        Some(SealError::WrongWindow { .. })
    ));
    // Rewriting the header's zone to pass the check breaks the header binding.
    let mut forged = object.clone();
    forged[36..52].copy_from_slice(Uuid::from_u128(9).as_bytes());
    let mut expect = context();
    expect.zone = Uuid::from_u128(9);
    assert!(matches!(
        open_with_tenant_key(&forged[..], &tk, Some(&expect)).err(),
        Some(SealError::HeaderTampered { .. })
    ));
}

#[tokio::test]
async fn wrong_retired_or_shredded_keys_are_key_errors() {
    let v1 = tenant_key(1);
    let v2 = tenant_key(2);
    let object = seal(&v1, b"{\"a\":1}\n", 64);

    // The key file of another version.
    assert!(matches!(
        open_with_tenant_key(&object[..], &v2, None).err(),
        Some(SealError::Key(KeyError::KeyFileMismatch {
            version: 1,
            file_version: 2,
            ..
        }))
    ));
    // A kms that never had this version.
    let kms = StaticKms::new().with_key(v2.clone());
    assert!(matches!(
        open_with_kms(&kms, &object[..], None).await.err(),
        Some(SealError::Key(KeyError::UnknownKeyVersion {
            version: 1,
            ..
        }))
    ));
    // v1 retired by a rotation: still opens.
    let kms = StaticKms::new().with_key(v1.clone()).with_key(v2.clone());
    let (_, opener) = open_with_kms(&kms, &object[..], Some(&context()))
        .await
        .unwrap();
    assert_eq!(opener.copy_to(&mut Vec::new()).unwrap().record_count, 1);
    // Same version number, different key material: the header does not authenticate.
    let impostor = tenant_key(1);
    assert!(matches!(
        open_with_tenant_key(&object[..], &impostor, None).err(),
        Some(SealError::HeaderTampered { .. })
    ));
    // Shredded.
    let mut kms = kms;
    kms.shred(context().tenant, 1);
    assert!(matches!(
        open_with_kms(&kms, &object[..], None).await.err(),
        Some(SealError::Key(KeyError::Shredded { version: 1, .. }))
    ));
    // New data keys come from the newest version.
    let dk = kms.generate_data_key(&context()).await.unwrap();
    assert_eq!(dk.tenant_key_version, 2);
}

#[test]
fn read_errors_carry_the_typed_cause() {
    let tk = tenant_key(1);
    let object = flip(&multi_chunk(&tk), HEADER_LEN + 1);
    let mut opener = open_with_tenant_key(&object[..], &tk, None).unwrap();
    let err = opener.read_to_end(&mut Vec::new()).unwrap_err();
    assert!(matches!(
        SealError::from_io(err, "read"),
        SealError::ChunkTampered { index: 0 }
    ));
}

#[test]
fn debug_output_never_shows_key_material() {
    let key = SecretKey::from_bytes([0xab; 32]);
    let tk = TenantKey::new(Uuid::nil(), 1, key.clone());
    let shown = format!("{key:?} {tk:?}");
    assert!(!shown.contains("ab"), "{shown}");
    assert!(!shown.contains("171"), "{shown}");
}

#[test]
fn header_parser_accepts_what_the_sealer_writes() {
    let tk = tenant_key(3);
    let object = multi_chunk(&tenant_key(3));
    let _ = tk;
    let header = SealedHeader::parse(&object).unwrap();
    assert_eq!(header.chunk_size, 256);
    assert_eq!(header.tenant_key_version, 3);
    assert_eq!(header.context, context());
    assert_eq!(&header.as_bytes()[..], &object[..HEADER_LEN]);
}

/// A reader that fails after `ok` bytes, like a dropped connection.
struct Flaky<'a> {
    data: &'a [u8],
    ok: usize,
}

impl Read for Flaky<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.ok == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            ));
        }
        let n = buf.len().min(self.ok).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.ok -= n;
        Ok(n)
    }
}

#[test]
fn source_read_failures_are_retryable_io_errors_not_corruption() {
    use rainlogs_core::error::{Classify, ErrorClass};
    let tk = tenant_key(1);
    let object = seal(&tk, &incompressible(5000, 9), 256);
    let reader = Flaky {
        data: &object,
        ok: HEADER_LEN + 600,
    };
    let opener = open_with_tenant_key(reader, &tk, None).unwrap();
    let err = opener.copy_to(&mut Vec::new()).unwrap_err();
    assert!(matches!(err, SealError::Io { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
}

/// docs/FORMAT.md §3: window instants lie in 1970-01-01T00:00:00Z ..=
/// 9999-12-31T23:59:59.999999Z; the writer refuses others and the reader rejects a
/// header holding one (before any key is asked for).
#[test]
fn window_instants_outside_1970_to_9999_are_refused_by_writer_and_reader() {
    let tk = tenant_key(1);
    let last =
        chrono::DateTime::from_timestamp_micros(rainlogs_sealed::MAX_INSTANT_MICROS).unwrap();
    assert_eq!(last.to_rfc3339(), "9999-12-31T23:59:59.999999+00:00");
    let refuse = |start: chrono::DateTime<Utc>, end: chrono::DateTime<Utc>| {
        let ctx = SealContext {
            window_start: start,
            window_end: end,
            ..context()
        };
        let dk = data_key(&tk, &ctx);
        match Sealer::new(Vec::new(), SealParams::new(ctx, &dk)) {
            Err(SealError::InvalidParams { reason }) => reason,
            Err(e) => panic!("{start}..{end}: {e}"),
            Ok(_) => panic!("{start}..{end} sealed"),
        }
    };
    let before_1970 = Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 0).unwrap();
    assert!(refuse(before_1970, before_1970 + chrono::TimeDelta::minutes(1)).contains("1969"));
    let year_10000 = last + chrono::TimeDelta::microseconds(1);
    assert!(refuse(last - chrono::TimeDelta::minutes(1), year_10000).contains("+10000"));
    // The last instant itself is a valid window end.
    let ctx = SealContext {
        window_start: last - chrono::TimeDelta::minutes(1),
        window_end: last,
        ..context()
    };
    let dk = data_key(&tk, &ctx);
    let mut sealer = Sealer::new(Vec::new(), SealParams::new(ctx, &dk)).unwrap();
    sealer.write_all(b"{\"a\":1}\n").unwrap();
    let (edge, _) = sealer.finish().unwrap();
    let opener = open_with_tenant_key(&edge[..], &tk, Some(&ctx)).unwrap();
    let mut out = Vec::new();
    opener.copy_to(&mut out).unwrap();
    assert_eq!(out, b"{\"a\":1}\n");

    // A header holding an instant out of range is malformed, whatever its tag says.
    let object = seal(&tk, b"{\"a\":1}\n", DEFAULT_CHUNK_SIZE);
    for (at, micros, field) in [
        (60, rainlogs_sealed::MAX_INSTANT_MICROS + 1, "window_end"),
        (52, -1, "window_start"),
        (60, i64::MAX, "window_end"),
    ] {
        let mut bad = object.clone();
        bad[at..at + 8].copy_from_slice(&micros.to_be_bytes());
        match SealedHeader::parse(&bad) {
            Err(SealError::MalformedHeader { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{micros} at {at}: {other:?}"),
        }
        assert!(matches!(
            open(&tk, &bad),
            Err(SealError::MalformedHeader { .. })
        ));
    }
}

/// docs/FORMAT.md §8: `key_hex` is written in lowercase; a reader accepts either case.
#[test]
fn key_hex_is_written_lowercase_and_read_in_either_case() {
    let tk = tenant_key(3);
    let file = tk.to_key_file();
    let v: serde_json::Value = serde_json::from_str(&file).unwrap();
    let hex = v["key_hex"].as_str().unwrap().to_owned();
    assert_eq!(hex.len(), 64);
    assert_eq!(hex, hex.to_lowercase(), "written in lowercase");
    let upper = file.replace(&hex, &hex.to_uppercase());
    let back = TenantKey::from_key_file(&upper).expect("uppercase key_hex reads");
    assert_eq!(back.key().expose(), tk.key().expose());
    assert_eq!((back.tenant, back.version), (tk.tenant, 3));
}

/// docs/FORMAT.md §6: the payload decoder of the reference reader (zstd's streaming
/// decoder as `Opener` builds it) reads concatenated frames in order and skips
/// skippable frames; it refuses a frame that needs a dictionary it does not have.
#[test]
fn the_payload_decoder_reads_concatenated_and_skippable_frames_not_dictionary_ones() {
    let decode = |payload: &[u8]| -> std::io::Result<Vec<u8>> {
        let mut d = zstd::stream::read::Decoder::with_buffer(std::io::BufReader::new(payload))?;
        let mut out = Vec::new();
        d.read_to_end(&mut out)?;
        Ok(out)
    };
    let a = zstd::bulk::compress(b"{\"a\":1}\n", 3).unwrap();
    let b = zstd::bulk::compress(b"{\"b\":2}\n", 3).unwrap();
    let mut skippable = 0x184D_2A50u32.to_le_bytes().to_vec();
    skippable.extend_from_slice(&5u32.to_le_bytes());
    skippable.extend_from_slice(b"notes");
    let payload = [a.clone(), skippable, b].concat();
    assert_eq!(decode(&payload).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");

    let samples: Vec<Vec<u8>> = (0..2000)
        .map(|i| format!("{{\"RayID\":\"{i:016x}\",\"ClientIP\":\"10.0.{}.{}\",\"EdgeResponseStatus\":{}}}\n", i % 251, i % 13, 200 + i % 7).into_bytes())
        .collect();
    let dict = zstd::dict::from_samples(&samples, 4096).expect("a dictionary trains");
    let mut with_dict = zstd::bulk::Compressor::with_dictionary(3, &dict).unwrap();
    let framed = with_dict.compress(&samples[7]).unwrap();
    assert!(
        decode(&framed).is_err(),
        "a dictionary frame must not decode without it"
    );
}
