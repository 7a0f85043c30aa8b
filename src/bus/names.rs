//! Every Redis key tipwire uses, in one place. The prefix is configuration
//! (`redis.key_prefix`, default `tipwire`); the suffixes are fixed here.

/// Suffix of the alert stream: one entry per tip.
pub const ALERTS: &str = "alerts";
/// Suffix of the mediator directory hash: mediator id → record (public keys only).
pub const MEDIATORS: &str = "mediators";

/// Full key names for one prefix, built once.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    alerts: String,
    mediators: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            alerts: format!("{prefix}:{ALERTS}"),
            mediators: format!("{prefix}:{MEDIATORS}"),
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
