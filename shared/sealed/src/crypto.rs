//! Per-object keys and chunk nonces (docs/FORMAT.md §Keys and §Chunks).
//!
//! The data key never encrypts anything directly: HKDF-SHA256 over it and the header's
//! salt gives a header-tag key and a payload key, so a data key reused by a caller's
//! mistake still gets distinct payload keys per object (the salt differs).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::kms::SecretKey;

pub(crate) const INFO_HEADER: &[u8] = b"rainlogs sealed v1 header-tag";
pub(crate) const INFO_PAYLOAD: &[u8] = b"rainlogs sealed v1 payload";

/// The keys one object is sealed under.
pub(crate) struct ObjectKeys {
    header_key: Zeroizing<[u8; 32]>,
    pub(crate) payload: Aes256Gcm,
}

impl ObjectKeys {
    pub(crate) fn derive(data_key: &SecretKey, salt: &[u8; 16]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(salt), data_key.expose());
        let mut header_key = Zeroizing::new([0u8; 32]);
        let mut payload_key = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
        let _ = hk.expand(INFO_HEADER, header_key.as_mut_slice());
        let _ = hk.expand(INFO_PAYLOAD, payload_key.as_mut_slice());
        let payload = Aes256Gcm::new((&*payload_key).into());
        Self {
            header_key,
            payload,
        }
    }

    /// HMAC-SHA256 of the header bytes before the tag: authenticates the header and
    /// commits to the data key (AES-GCM alone is not key-committing).
    pub(crate) fn header_tag(&self, tagged: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.header_key.as_slice())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(tagged);
        mac.finalize().into_bytes().into()
    }

    pub(crate) fn verify_header_tag(&self, tagged: &[u8], tag: &[u8; 32]) -> bool {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(self.header_key.as_slice()) else {
            return false;
        };
        mac.update(tagged);
        mac.verify_slice(tag).is_ok()
    }

    /// Encrypts `buf` in place; returns the tag.
    pub(crate) fn seal_chunk(
        &self,
        counter: u32,
        last: bool,
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; 16], ()> {
        let nonce = chunk_nonce(counter, last);
        self.payload
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, buf)
            .map(|t| t.into())
            .map_err(|_| ())
    }

    /// Decrypts `buf` in place if `tag` authenticates it. On failure `buf` holds
    /// garbage that must not be released.
    pub(crate) fn open_chunk(
        &self,
        counter: u32,
        last: bool,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8],
    ) -> bool {
        let nonce = chunk_nonce(counter, last);
        self.payload
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), aad, buf, Tag::from_slice(tag))
            .is_ok()
    }
}

/// STREAM nonce: 7 zero bytes, the chunk counter (u32 big-endian), the last-chunk flag.
pub(crate) fn chunk_nonce(counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}
