//! Phone numbers in E.164 form (`+` and 8 to 15 digits). Numbers arrive from
//! provider webhooks (untrusted) and configuration; both parse here. A number
//! never leaves the SMS adapter in clear: it becomes a pseudonym, and the copy
//! needed for replies is sealed to the relay key.

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an E.164 phone number")]
pub struct InvalidPhoneNumber;

impl PhoneNumber {
    /// Accepts `+` followed by 8 to 15 digits; spaces, dashes, dots and
    /// parentheses between digits are dropped.
    pub fn parse(s: &str) -> Result<Self, InvalidPhoneNumber> {
        let s = s.trim();
        let rest = s.strip_prefix('+').ok_or(InvalidPhoneNumber)?;
        let mut digits = String::with_capacity(16);
        digits.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(InvalidPhoneNumber),
            }
        }
        let count = digits.len() - 1;
        if !(8..=15).contains(&count) || digits.as_bytes().get(1) == Some(&b'0') {
            return Err(InvalidPhoneNumber);
        }
        Ok(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Never print a number in a log line or a panic message.
impl std::fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneNumber(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn e164_numbers_parse_and_others_do_not() {
        assert_eq!(
            PhoneNumber::parse("+1 (555) 123-4567").unwrap().as_str(),
            "+15551234567"
        );
        for bad in [
            "5551234567",
            "+1555",
            "+1555123456789012",
            "+0123456789",
            "+1555abc4567",
            "",
            "+",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            format!("{:?}", PhoneNumber::parse("+15551234567").unwrap()),
            "PhoneNumber(..)"
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_output_is_canonical(s in "\\PC{0,30}") {
            if let Ok(n) = PhoneNumber::parse(&s) {
                prop_assert!(n.as_str().starts_with('+'));
                prop_assert!(n.as_str()[1..].bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(PhoneNumber::parse(n.as_str()).unwrap(), n.clone());
            }
        }
    }
}
