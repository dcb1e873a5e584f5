//! AIP-158 pagination: a list takes `page_size` (default 50, at most 500; larger is
//! served as 500) and `page_token`, and answers `next_page_token` (empty on the last
//! page). A token is opaque to callers: base64url of the listing's name, a hash of the
//! query's filters and the keyset cursor — a token that does not decode, belongs to
//! another listing or to other filters is refused (400 `request.invalid_page_token`),
//! never guessed at.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::problem::Problem;

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 500;
/// Longest page token accepted (they are much shorter).
const MAX_TOKEN_LEN: usize = 2048;

#[derive(Serialize, Deserialize)]
struct Token<C> {
    v: u8,
    /// The listing.
    l: String,
    /// Hash of the filters.
    f: String,
    /// The keyset cursor: the last item of the previous page.
    c: C,
}

fn filter_hash(filters: &impl Serialize) -> String {
    let json = serde_json::to_vec(filters).unwrap_or_default();
    hex_prefix(&Sha256::digest(&json))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// A page request, parsed: how many, after which cursor.
#[derive(Debug)]
pub struct PageRequest<C> {
    pub size: usize,
    pub after: Option<C>,
    listing: &'static str,
    filters: String,
}

impl<C: Serialize + DeserializeOwned> PageRequest<C> {
    /// Parses `page_size` and `page_token` for `listing` under `filters`.
    pub fn parse(
        listing: &'static str,
        filters: &impl Serialize,
        page_size: Option<i64>,
        page_token: Option<&str>,
    ) -> Result<Self, Problem> {
        let size = match page_size {
            None | Some(0) => DEFAULT_PAGE_SIZE,
            Some(n) if n < 0 => {
                return Err(Problem::bad_request(
                    "request.invalid_page_size",
                    format!("page_size must be 0-{MAX_PAGE_SIZE} (0: the default, {DEFAULT_PAGE_SIZE}), got {n}"),
                ))
            }
            Some(n) => (n as usize).min(MAX_PAGE_SIZE),
        };
        let filters = filter_hash(filters);
        let after = match page_token.filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => Some(decode(listing, &filters, token)?),
        };
        Ok(Self {
            size,
            after,
            listing,
            filters,
        })
    }

    /// The token of the page after the one ending at `last`.
    pub fn token_after(&self, last: C) -> String {
        let token = Token {
            v: 1,
            l: self.listing.to_owned(),
            f: self.filters.clone(),
            c: last,
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
    }
}

fn decode<C: DeserializeOwned>(listing: &str, filters: &str, token: &str) -> Result<C, Problem> {
    let invalid = |why: &str| {
        Problem::bad_request(
            "request.invalid_page_token",
            format!("page_token {why}: pass the next_page_token of the previous page unchanged, with the same filters"),
        )
    };
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid("is too long"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid("is not a page token"))?;
    let token: Token<C> =
        serde_json::from_slice(&bytes).map_err(|_| invalid("is not a page token"))?;
    if token.v != 1 || token.l != listing {
        return Err(invalid("belongs to another listing"));
    }
    if token.f != filters {
        return Err(invalid("was made for other filters"));
    }
    Ok(token.c)
}

/// One page of `items` (sorted ascending by `key`), after the request's cursor; and
/// the next page's token when more remain.
pub fn slice<T, K>(items: Vec<T>, key: impl Fn(&T) -> K, req: &PageRequest<K>) -> (Vec<T>, String)
where
    K: Serialize + DeserializeOwned + PartialOrd,
{
    let mut rest = items
        .into_iter()
        .filter(|item| req.after.as_ref().is_none_or(|after| key(item) > *after))
        .peekable();
    let page: Vec<T> = rest.by_ref().take(req.size).collect();
    let next = match (rest.peek(), page.last()) {
        (Some(_), Some(last)) => req.token_after(key(last)),
        _ => String::new(),
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_a_list_and_tokens_are_bound_to_listing_and_filters() {
        let items: Vec<i64> = (1..=7).collect();
        let mut req = PageRequest::<i64>::parse("nums", &("f", 1), Some(3), None).unwrap();
        let mut seen = Vec::new();
        loop {
            let (page, next) = slice(items.clone(), |n| *n, &req);
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            req = PageRequest::parse("nums", &("f", 1), Some(3), Some(&next)).unwrap();
            assert!(PageRequest::<i64>::parse("other", &("f", 1), None, Some(&next)).is_err());
            assert!(PageRequest::<i64>::parse("nums", &("f", 2), None, Some(&next)).is_err());
        }
        assert_eq!(seen, items);
        for bad in ["%%%", "bm90IGpzb24", &"A".repeat(3000)] {
            let e = PageRequest::<i64>::parse("nums", &(), None, Some(bad)).unwrap_err();
            assert_eq!(e.code, "request.invalid_page_token");
        }
        assert_eq!(
            PageRequest::<i64>::parse("nums", &(), Some(-1), None)
                .unwrap_err()
                .code,
            "request.invalid_page_size"
        );
        assert_eq!(
            PageRequest::<i64>::parse("nums", &(), Some(10_000), None)
                .unwrap()
                .size,
            MAX_PAGE_SIZE
        );
    }
}
