//! Email addresses (RFC 5321 mailbox form, `local@domain`). They arrive in SMTP
//! commands and headers (untrusted) and in configuration; both parse here. A
//! tipster's address never leaves the email adapter in clear: it becomes a
//! pseudonym, and the copy needed for replies is sealed to the relay key.

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an email address")]
pub struct InvalidEmailAddress;

/// RFC 5321 §4.5.3.1: 64 octets of local part, 255 of domain, 254 in a path.
const MAX_LOCAL: usize = 64;
const MAX_TOTAL: usize = 254;

impl EmailAddress {
    /// Accepts a dot-atom local part (RFC 5322 `atext` plus UTF-8, RFC 6531)
    /// and a domain of letters, digits and hyphens. The domain is lowercased;
    /// the local part is kept as written, since only the receiving server
    /// knows whether it is case-sensitive. Quoted local parts, address
    /// literals and anything with control characters, spaces or angle brackets
    /// are refused: no mail client puts them in a From line a person writes.
    pub fn parse(s: &str) -> Result<Self, InvalidEmailAddress> {
        let s = s.trim();
        let (local, domain) = s.rsplit_once('@').ok_or(InvalidEmailAddress)?;
        if local.is_empty() || local.len() > MAX_LOCAL || s.len() > MAX_TOTAL {
            return Err(InvalidEmailAddress);
        }
        let atext = |c: char| {
            c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
        };
        if local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local.chars().all(|c| c == '.' || atext(c))
            || local.chars().any(char::is_control)
        {
            return Err(InvalidEmailAddress);
        }
        let domain = domain.to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if domain.is_empty() || !domain.split('.').all(label_ok) {
            return Err(InvalidEmailAddress);
        }
        Ok(Self(format!("{local}@{domain}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// The form pseudonyms are derived from: wholly lowercased, so Ana@x.org
    /// and ana@x.org are one tipster (as they are at every large provider).
    pub fn canonical(&self) -> String {
        self.0.to_lowercase()
    }
}

/// Never print an address in a log line or a panic message.
impl std::fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmailAddress(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_addresses_parse_with_the_domain_lowercased() {
        let a = EmailAddress::parse(" Ana.Ruiz+tips@Mail.Example.ORG ").unwrap();
        assert_eq!(a.as_str(), "Ana.Ruiz+tips@mail.example.org");
        assert_eq!(a.domain(), "mail.example.org");
        assert_eq!(a.canonical(), "ana.ruiz+tips@mail.example.org");
        assert!(EmailAddress::parse("alerts@localhost").is_ok());
        assert!(EmailAddress::parse("josé@example.org").is_ok());
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "@example.org",
            "ana@",
            "ana",
            "ana@exa mple.org",
            "a b@example.org",
            ".ana@example.org",
            "ana.@example.org",
            "an..a@example.org",
            "ana@-example.org",
            "ana@example..org",
            "<ana@example.org>",
            "\"ana\"@example.org",
            "ana@[127.0.0.1]",
            "ana\r\n@example.org",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long_local = format!("{}@example.org", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local).is_err());
    }

    #[test]
    fn debug_never_shows_the_address() {
        let a = EmailAddress::parse("ana@example.org").unwrap();
        assert_eq!(format!("{a:?}"), "EmailAddress(..)");
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_parsed_addresses_reparse_to_themselves(s in "\\PC{0,80}") {
            if let Ok(a) = EmailAddress::parse(&s) {
                prop_assert_eq!(EmailAddress::parse(a.as_str()).unwrap(), a);
            }
        }
    }
}
