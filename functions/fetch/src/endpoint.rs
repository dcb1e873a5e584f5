//! Which URL a zone's token is sent to, and the rule that it goes nowhere else: the
//! domain's [`CloudflareApi`] (`rainlogs_archive::endpoint`), re-exported where the
//! fetch stage and its callers have always found it. A real zone is fetched from the
//! allow-listed Cloudflare API base, a simulated zone from the simulator URL it was
//! registered with; the Logpull client never follows redirects, so a token cannot be
//! bounced to another host either.

pub use rainlogs_archive::endpoint::{
    CloudflareApi, EndpointError, CLOUDFLARE_API_ALLOW_VAR, CLOUDFLARE_API_VAR,
};
