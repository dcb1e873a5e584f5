//! Fuzzes the whole opener (header, chunk framing, trailer) with a fixed key: arbitrary
//! objects must fail with a typed error, never panic or allocate without bound.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use rainlogs_sealed::kms::{SecretKey, TenantKey};
use rainlogs_sealed::open_with_tenant_key;
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    // The tenant in the input's own header, so parsing goes past the key-file check.
    let tenant = data
        .get(16..32)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .map(Uuid::from_bytes)
        .unwrap_or_default();
    let version = data
        .get(32..36)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .unwrap_or(1);
    let key = TenantKey::new(tenant, version, SecretKey::from_bytes([7; 32]));
    if let Ok(mut opener) = open_with_tenant_key(data, &key, None) {
        let mut sink = [0u8; 4096];
        while let Ok(n) = opener.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }
});
