//! The tip site's HTML shell: escaping, the page layout (no script, no
//! third-party asset) and the plain-words error page. Shared by the tip pages
//! (`channels::web::pages`) and `AppError`'s HTML answer, so the error page
//! needs nothing from the channels. The message shown is one of `AppError`'s
//! fixed messages; everything inserted is escaped.

pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

pub(crate) fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/static/tipwire.css\">\n</head>\n\
         <body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        escape(title)
    )
}

pub fn error_page(status: u16, message: &str) -> String {
    let body = format!(
        "<h1>{}</h1>\n<p>{}</p>\n<p><a href=\"/\">Back to the tip page</a></p>\n<p class=\"note\">Error {status}</p>",
        match status {
            429 => "Please wait a little",
            404 | 405 => "Nothing here",
            _ => "Your tip was not sent",
        },
        escape(message)
    );
    layout("Not sent", &body)
}
