//! The SMTP replies tipwire gives (RFC 5321 codes with RFC 3463 enhanced
//! status codes). Every text is fixed: no reply ever echoes what a client
//! sent.

/// An SMTP reply: code, enhanced status code (RFC 3463) and a fixed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: (u8, u16, u16),
    pub text: &'static str,
}

impl Reply {
    pub const fn new(code: u16, status: (u8, u16, u16), text: &'static str) -> Self {
        Self { code, status, text }
    }

    pub(super) fn render(&self) -> String {
        let (a, b, c) = self.status;
        // RFC 2034 §3: enhanced codes go on 2xx, 4xx and 5xx replies only.
        if a == 0 {
            format!("{} {}\r\n", self.code, self.text)
        } else {
            format!("{} {a}.{b}.{c} {}\r\n", self.code, self.text)
        }
    }

    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

pub const OK: Reply = Reply::new(250, (2, 0, 0), "OK");
pub const BYE: Reply = Reply::new(221, (2, 0, 0), "Bye");
pub const START_DATA: Reply = Reply::new(354, (0, 0, 0), "End data with <CR><LF>.<CR><LF>");
pub const BAD_SEQUENCE: Reply = Reply::new(503, (5, 5, 1), "Bad sequence of commands");
pub const UNKNOWN: Reply = Reply::new(500, (5, 5, 1), "Command not recognised");
pub const NOT_IMPLEMENTED: Reply = Reply::new(502, (5, 5, 1), "Command not implemented");
pub const SYNTAX: Reply = Reply::new(501, (5, 5, 4), "Syntax error in parameters");
pub const BARE_NEWLINE_COMMAND: Reply =
    Reply::new(500, (5, 5, 2), "Command lines must end with <CR><LF>");
pub const LINE_TOO_LONG: Reply = Reply::new(500, (5, 5, 2), "Line too long");
pub const NEED_TLS: Reply = Reply::new(530, (5, 7, 0), "Must issue a STARTTLS command first");
pub const NO_BOUNCES: Reply = Reply::new(
    550,
    (5, 7, 1),
    "This address does not accept delivery status notifications",
);
pub const BAD_SENDER: Reply = Reply::new(553, (5, 1, 7), "Sender address is not valid");
pub const BAD_RECIPIENT: Reply = Reply::new(501, (5, 1, 3), "Recipient address is not valid");
pub const NOT_HERE: Reply = Reply::new(
    550,
    (5, 7, 1),
    "Relaying denied: this server only receives mail for its own tip addresses",
);
pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, (4, 5, 3), "Too many recipients");
pub const TOO_BIG: Reply = Reply::new(552, (5, 3, 4), "Message too big");
pub const BARE_NEWLINE: Reply = Reply::new(
    554,
    (5, 6, 0),
    "Message refused: bare <LF> or <CR> found; lines must end with <CR><LF>",
);
pub const DATA_LINE_TOO_LONG: Reply = Reply::new(554, (5, 6, 0), "Message refused: line too long");
pub const TLS_READY: Reply = Reply::new(220, (2, 0, 0), "Ready to start TLS");
pub const TLS_PIPELINED: Reply = Reply::new(
    554,
    (5, 5, 1),
    "Commands were sent after STARTTLS before the handshake; closing",
);
pub const NO_TLS_HERE: Reply = Reply::new(502, (5, 5, 1), "STARTTLS not available");
pub const IDLE: Reply = Reply::new(421, (4, 4, 2), "Idle timeout, closing connection");
pub const TOO_LONG_SESSION: Reply =
    Reply::new(421, (4, 4, 2), "Session too long, closing connection");
pub const TOO_MANY_COMMANDS: Reply =
    Reply::new(421, (4, 7, 0), "Too many commands, closing connection");
pub const TOO_SLOW: Reply = Reply::new(
    421,
    (4, 4, 2),
    "Connection too slow (below the minimum data rate), closing connection",
);
pub const NO_ROOM: Reply = Reply::new(
    452,
    (4, 3, 1),
    "Insufficient system storage, the message was not stored; try again later",
);
pub const SHUTTING_DOWN: Reply = Reply::new(421, (4, 3, 2), "Shutting down, try again later");
pub const VRFY: Reply = Reply::new(
    252,
    (2, 5, 0),
    "Cannot verify the user, but will accept the message",
);
pub const HELP: Reply = Reply::new(
    214,
    (2, 0, 0),
    "This server receives tips for its tip addresses",
);

// At the end of DATA, from the channel.
pub const ACCEPTED: Reply = Reply::new(250, (2, 0, 0), "Message accepted");
pub const ACCEPTED_PARTLY: Reply = Reply::new(
    250,
    (2, 0, 0),
    "Message accepted; some attachments were not kept (only JPEG, PNG and HEIC photos within the size limit)",
);
pub const MALFORMED: Reply = Reply::new(
    550,
    (5, 6, 0),
    "Message refused: not a well-formed message with a From address",
);
pub const NESTED_MESSAGE: Reply = Reply::new(
    550,
    (5, 6, 0),
    "Message refused: attached or forwarded messages (message/rfc822) are not accepted; forward inline or paste the text",
);
pub const TOO_COMPLEX: Reply = Reply::new(
    550,
    (5, 6, 0),
    "Message refused: too many MIME parts, lines, header bytes or levels of nesting",
);
pub const EMPTY: Reply = Reply::new(550, (5, 6, 0), "Message refused: no text and no attachment");
pub const TEXT_TOO_LONG: Reply = Reply::new(552, (5, 3, 4), "Message refused: text too long");
pub const SLOW_DOWN: Reply = Reply::new(450, (4, 7, 1), "Too many messages; try again later");
pub const TRY_LATER: Reply = Reply::new(
    451,
    (4, 3, 0),
    "Temporary failure; the message was not stored, try again later",
);
/// Redis did not answer in time: the message may be stored. Sending the same
/// message again (same Message-ID, or the same bytes) is stored once.
pub const NOT_CONFIRMED: Reply = Reply::new(
    451,
    (4, 3, 0),
    "Temporary failure; the message may not have been stored, try again later (the same message sent again is stored once)",
);
pub const AUTOMATIC: Reply = Reply::new(
    550,
    (5, 7, 1),
    "Message refused: automatic replies (Auto-Submitted) are not accepted",
);
pub const OWN_ADDRESS: Reply = Reply::new(
    550,
    (5, 7, 1),
    "Message refused: it claims to come from this tip line's own address",
);
pub const OPTED_OUT: Reply = Reply::new(
    250,
    (2, 0, 0),
    "Message accepted; this address will get no more mail from the tip line (send START to undo)",
);
pub const OPTED_IN: Reply = Reply::new(
    250,
    (2, 0, 0),
    "Message accepted; replies from the tip line will reach this address again",
);
