//! The words of the SMS channel: carrier keywords (CTIA opt-out rules), the
//! tipster's language, and every text the gateway sends on its own. Message
//! bodies are untrusted; classification only looks, never stores.

pub use crate::domain::Language;

/// A whole message that is a carrier keyword rather than a tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// Stop all texts to this sender (one confirmation, then silence).
    Stop,
    /// Resume texts.
    Start,
    /// Program name, how to stop, "Msg & data rates may apply".
    Help,
}

impl Keyword {
    /// Single-word messages only, case-insensitive, surrounding spaces and
    /// punctuation ignored; "stop the fight" is a tip, not an opt-out.
    pub fn classify(body: &str) -> Option<(Self, Option<Language>)> {
        let word = body
            .trim()
            .trim_matches(|c: char| c.is_ascii_punctuation())
            .to_uppercase();
        let found = match word.as_str() {
            "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "REVOKE"
            | "OPTOUT" => (Self::Stop, None),
            "START" | "YES" | "UNSTOP" => (Self::Start, None),
            "HELP" | "INFO" => (Self::Help, Some(Language::En)),
            "AYUDA" => (Self::Help, Some(Language::Es)),
            "PARAR" | "ALTO" => (Self::Stop, Some(Language::Es)),
            _ => return None,
        };
        Some(found)
    }
}

/// Everything the gateway texts by itself, per language.
pub struct Texts;

impl Texts {
    pub fn stopped(lang: Language, program: &str) -> String {
        match lang {
            Language::En => {
                format!("{program}: you will get no more texts from us. Reply START to resume.")
            }
            Language::Es => format!(
                "{program}: no recibirá más mensajes. Responda START para volver a recibirlos."
            ),
        }
    }

    pub fn started(lang: Language, program: &str) -> String {
        match lang {
            Language::En => format!("{program}: texts resumed. Reply STOP to stop, HELP for help."),
            Language::Es => format!(
                "{program}: mensajes reanudados. Responda STOP para parar, AYUDA para ayuda."
            ),
        }
    }

    pub fn help(lang: Language, program: &str) -> String {
        match lang {
            Language::En => format!(
                "{program}: send a tip about a conflict by text; it is anonymous. Reply STOP to stop texts. Msg & data rates may apply."
            ),
            Language::Es => format!(
                "{program}: envíe un aviso sobre un conflicto por mensaje; es anónimo. Responda STOP para no recibir mensajes. Pueden aplicarse tarifas de mensajes y datos."
            ),
        }
    }

    pub fn not_confirmed(lang: Language) -> &'static str {
        match lang {
            Language::En => {
                "Sorry, we could not confirm that your message reached us: it may not have. Please send it again in a few minutes; the team may then see it twice."
            }
            Language::Es => {
                "Lo sentimos, no pudimos confirmar que su mensaje nos llegó: puede que no haya llegado. Por favor envíelo de nuevo en unos minutos; puede que el equipo lo vea dos veces."
            }
        }
    }

    pub fn slow_down(lang: Language) -> &'static str {
        match lang {
            Language::En => {
                "We got many messages from you in a short time. Please wait a little before sending more."
            }
            Language::Es => {
                "Recibimos muchos mensajes suyos en poco tiempo. Por favor espere un poco antes de enviar más."
            }
        }
    }

    pub fn media_not_fetched(lang: Language) -> &'static str {
        match lang {
            Language::En => {
                "Your text was received, but we could not get your photo. Please send it again."
            }
            Language::Es => {
                "Su texto fue recibido, pero no pudimos obtener su foto. Por favor envíela de nuevo."
            }
        }
    }

    pub fn media_refused(lang: Language) -> &'static str {
        match lang {
            Language::En => {
                "We could only take photos (JPEG, PNG or HEIC) up to the size limit. Your text was received."
            }
            Language::Es => {
                "Solo podemos recibir fotos (JPEG, PNG o HEIC) hasta el tamaño límite. Su texto fue recibido."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_word_keywords_are_keywords() {
        for stop in [
            "STOP",
            "stop",
            " Stop. ",
            "STOPALL",
            "unsubscribe",
            "Cancel",
            "END",
            "quit",
            "REVOKE",
            "OptOut",
        ] {
            assert_eq!(
                Keyword::classify(stop).map(|k| k.0),
                Some(Keyword::Stop),
                "{stop}"
            );
        }
        for start in ["START", "yes", "Unstop"] {
            assert_eq!(
                Keyword::classify(start).map(|k| k.0),
                Some(Keyword::Start),
                "{start}"
            );
        }
        assert_eq!(Keyword::classify("help").map(|k| k.0), Some(Keyword::Help));
        assert_eq!(Keyword::classify("INFO").map(|k| k.0), Some(Keyword::Help));
        assert_eq!(
            Keyword::classify("ayuda"),
            Some((Keyword::Help, Some(Language::Es)))
        );
        assert_eq!(Keyword::classify("stop the fight on 5th"), None);
        assert_eq!(Keyword::classify("help, they have guns"), None);
    }

    #[test]
    fn spanish_messages_are_answered_in_spanish() {
        assert_eq!(
            Language::detect("Hola, hay una pelea en la esquina ahora", Language::En),
            Language::Es
        );
        assert_eq!(
            Language::detect("There is a fight at the corner now", Language::Es),
            Language::En
        );
        assert_eq!(
            Language::detect("5th & Main 9pm", Language::Es),
            Language::Es
        );
    }

    #[test]
    fn help_names_the_program_how_to_stop_and_the_rates_notice() {
        let help = Texts::help(Language::En, "Safe Streets");
        assert!(
            help.contains("Safe Streets")
                && help.contains("STOP")
                && help.contains("Msg & data rates may apply")
        );
    }
}
