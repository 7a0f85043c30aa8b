//! The languages the gateway answers tipsters in: an operator setting
//! (`sms.default_language`) and what a message is detected to be written in.

/// Languages the gateway answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    En,
    Es,
}

impl Language {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "en" => Some(Self::En),
            "es" => Some(Self::Es),
            _ => None,
        }
    }

    /// Spanish when the message says so in a few common words; else `default`.
    pub fn detect(body: &str, default: Self) -> Self {
        const SPANISH: &[&str] = &[
            "hola", "ayuda", "pelea", "esta", "está", "están", "hay", "que", "qué", "con", "por",
            "para", "calle", "esquina", "noche", "hoy", "ahora", "ellos", "dijo", "van", "armas",
            "pistola", "español", "espanol", "gracias", "los", "las", "una", "pero",
        ];
        const ENGLISH: &[&str] = &[
            "the", "and", "is", "are", "they", "there", "fight", "street", "tonight", "now",
            "with", "said", "gun", "going", "corner", "help", "at", "on", "of", "to",
        ];
        let mut es = 0;
        let mut en = 0;
        for word in body
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let w = word.to_lowercase();
            if SPANISH.contains(&w.as_str()) {
                es += 1;
            }
            if ENGLISH.contains(&w.as_str()) {
                en += 1;
            }
        }
        match es.cmp(&en) {
            std::cmp::Ordering::Greater => Self::Es,
            std::cmp::Ordering::Less => Self::En,
            std::cmp::Ordering::Equal => default,
        }
    }
}
