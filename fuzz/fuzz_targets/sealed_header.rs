//! Fuzzes the sealed header parser: any bytes must give a header or a typed error,
//! never a panic, and an accepted header must be exactly the bytes it was parsed from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rainlogs_sealed::{SealedHeader, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = SealedHeader::parse(data) {
        assert_eq!(&header.as_bytes()[..], &data[..HEADER_LEN]);
    }
    let mut reader = data;
    let _ = SealedHeader::read_from(&mut reader);
});
