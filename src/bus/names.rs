//! Every Redis key tipwire uses, in one place. The prefix is configuration
//! (`redis.key_prefix`, default `tipwire`); the suffixes are fixed here.

/// Suffix of the alert stream: one entry per tip.
pub const ALERTS: &str = "alerts";
/// Suffix of the mediator directory hash: mediator id → record (public keys only).
pub const MEDIATORS: &str = "mediators";
/// Suffix of the directory's version counter, bumped with every change so a
/// tip sealed under an outdated directory is re-sealed before it is appended.
pub const MEDIATORS_VERSION: &str = "mediators:version";

/// Full key names for one prefix, built once. The append script touches both
/// the stream and the directory version, so under Redis Cluster the prefix must
/// be a hash tag (`{tipwire}`) to keep them in one slot.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    alerts: String,
    mediators: String,
    mediators_version: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            alerts: format!("{prefix}:{ALERTS}"),
            mediators: format!("{prefix}:{MEDIATORS}"),
            mediators_version: format!("{prefix}:{MEDIATORS_VERSION}"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn alerts(&self) -> &str {
        &self.alerts
    }

    pub fn mediators(&self) -> &str {
        &self.mediators
    }

    pub fn mediators_version(&self) -> &str {
        &self.mediators_version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_prefix_gives_the_documented_stream_name() {
        assert_eq!(Keys::new("tipwire").alerts(), "tipwire:alerts");
        assert_eq!(Keys::new("{tw}").mediators(), "{tw}:mediators");
    }
}
