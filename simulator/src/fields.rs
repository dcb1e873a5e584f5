//! The `http_requests` fields the simulator serves, with the descriptions returned by
//! `GET /logs/received/fields`.
//!
//! A field is an enum variant rather than a string so the generator writes a record
//! with a `match`, not a string comparison per field per record. The names follow
//! Cloudflare's Logpull dataset; the set covers what log pipelines commonly request,
//! including nested objects (`RequestHeaders`, `ResponseHeaders`, `Cookies`) and arrays
//! (`BotTags`, `FirewallMatches*`, `SecurityActions`, ...).

macro_rules! fields {
    ($($variant:ident => $desc:literal,)*) => {
        /// One `http_requests` field.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Field {
            $($variant,)*
        }

        impl Field {
            /// Every field, in the order records list them.
            pub const ALL: &'static [Field] = &[$(Field::$variant,)*];

            /// The field's name as it appears in the API and in records.
            pub fn name(self) -> &'static str {
                match self {
                    $(Field::$variant => stringify!($variant),)*
                }
            }

            /// The description served by the fields endpoint.
            pub fn description(self) -> &'static str {
                match self {
                    $(Field::$variant => $desc,)*
                }
            }
        }
    };
}

fields! {
    BotScore => "Cloudflare Bot Score; 1 means likely automated, 99 likely human",
    BotScoreSrc => "Detection engine behind the bot score: Heuristics | Machine Learning | Verified Bot | JS Fingerprinting | Not Computed",
    BotTags => "Array of tags describing how the request was classified by Bot Management",
    CacheCacheStatus => "unknown | miss | expired | updating | stale | hit | ignored | bypass | revalidated | dynamic",
    CacheResponseBytes => "Number of bytes returned by the cache",
    CacheResponseStatus => "HTTP status code returned by the cache to the edge",
    ClientASN => "Client AS number",
    ClientCountry => "2-letter ISO-3166 country code of the client IP",
    ClientDeviceType => "Client device type",
    ClientIP => "IP address of the client",
    ClientRegionCode => "ISO-3166-2 region code of the client IP",
    ClientRequestBytes => "Number of bytes in the client request",
    ClientRequestHost => "Host requested by the client",
    ClientRequestMethod => "HTTP method of the client request",
    ClientRequestPath => "URI path requested by the client",
    ClientRequestProtocol => "HTTP protocol of the client request",
    ClientRequestReferer => "HTTP request referrer",
    ClientRequestScheme => "The URL scheme requested by the visitor",
    ClientRequestURI => "URI requested by the client",
    ClientRequestUserAgent => "User agent reported by the client",
    ClientSSLCipher => "Client SSL cipher",
    ClientSSLProtocol => "Client SSL (TLS) protocol",
    ClientSrcPort => "Client source port",
    ClientTCPRTTMs => "The smoothed average of TCP round-trip time (SRTT)",
    ClientXRequestedWith => "X-Requested-With HTTP header",
    Cookies => "String key-value pairs for Cookies",
    EdgeColoCode => "IATA airport code of the data center that received the request",
    EdgeColoID => "Cloudflare edge colo id",
    EdgeEndTimestamp => "Timestamp at which the edge finished sending the response to the client",
    EdgePathingOp => "Indicates what type of response was issued for this request",
    EdgePathingSrc => "Details how the request was classified based on security checks",
    EdgePathingStatus => "Indicates what data was used to determine the handling of this request",
    EdgeRequestHost => "Host header on the request from the edge to the origin",
    EdgeResponseBodyBytes => "Size of the HTTP response body returned to clients",
    EdgeResponseBytes => "Number of bytes returned by the edge to the client",
    EdgeResponseContentType => "The edge response Content-Type header value",
    EdgeResponseStatus => "HTTP status code returned by Cloudflare to the client",
    EdgeServerIP => "IP of the edge server making a request to the origin",
    EdgeStartTimestamp => "Timestamp at which the edge received the request from the client",
    EdgeTimeToFirstByteMs => "Total view of Time To First Byte as measured at Cloudflare's edge",
    FirewallMatchesActions => "Array of actions the Cloudflare firewall products performed on this request",
    FirewallMatchesRuleIDs => "Array of RuleIDs of the firewall product that has matched the request",
    FirewallMatchesSources => "The firewall products that matched the request",
    JA3Hash => "The MD5 hash of the JA3 fingerprint used to profile SSL/TLS clients",
    OriginIP => "IP of the origin server",
    OriginResponseBytes => "Number of bytes returned by the origin server",
    OriginResponseDurationMs => "Upstream response time, measured from the first datacenter that receives a request",
    OriginResponseStatus => "Status returned by the upstream server",
    OriginSSLProtocol => "SSL (TLS) protocol used to connect to the origin",
    RayID => "ID of the request",
    RequestHeaders => "String key-value pairs for RequestHeaders",
    ResponseHeaders => "String key-value pairs for ResponseHeaders",
    SecurityAction => "Action of the security rule that triggered a terminating action, if any",
    SecurityActions => "Array of actions that Cloudflare security products performed on this request",
    SecurityLevel => "The security level configured at the time of this request: off | essentially_off | low | med | high | under_attack",
    SecurityRuleDescription => "The description of the security rule that triggered a terminating action, if any",
    SecurityRuleID => "The security rule ID that triggered a terminating action, if any",
    SecuritySources => "Array of Cloudflare security products that matched the request",
    WAFAction => "Action taken by the WAF, if triggered",
    WAFAttackScore => "Overall request score generated by the WAF detection module",
    WAFFlags => "Additional configuration flags: simulate (0x1) | null",
    WAFMatchedVar => "The full name of the most-recently matched variable",
    WAFProfile => "WAF profile: low | med | high",
    WAFRCEAttackScore => "WAF score for an RCE attack",
    WAFRuleID => "ID of the applied WAF rule",
    WAFRuleMessage => "Rule message associated with the triggered rule",
    WAFSQLiAttackScore => "WAF score for an SQLi attack",
    WAFXSSAttackScore => "WAF score for an XSS attack",
    ZoneName => "The human-readable name of the zone",
}

/// The fields Cloudflare returns when a request names none.
pub const DEFAULT_FIELDS: &[Field] = &[
    Field::ClientIP,
    Field::ClientRequestHost,
    Field::ClientRequestMethod,
    Field::ClientRequestURI,
    Field::EdgeEndTimestamp,
    Field::EdgeResponseBytes,
    Field::EdgeResponseStatus,
    Field::EdgeStartTimestamp,
    Field::RayID,
];

impl Field {
    /// Looks a field up by its exact (case-sensitive) name.
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_parses_back_from_its_name() {
        for f in Field::ALL {
            assert_eq!(Field::parse(f.name()), Some(*f));
        }
        assert_eq!(Field::parse("clientip"), None);
    }
}
