//! HTML pages of the tip site: plain, accessible, mobile-first, no script, no
//! third-party asset. Nothing a tipster typed is ever echoed back; the only
//! dynamic content is operator configuration (zone names), escaped.

use crate::domain::Zone;

fn escape(s: &str) -> String {
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

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"/static/tipwire.css\">\n</head>\n\
         <body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        escape(title)
    )
}

/// The tip form. Rendered once at start-up: zones do not change while running.
pub fn tip_form(zones: &[(Zone, String)], max_text_chars: usize) -> String {
    let mut options = String::from("<option value=\"unsure\">Not sure</option>\n");
    for (zone, name) in zones {
        options.push_str(&format!(
            "<option value=\"{}\">{}</option>\n",
            escape(zone.as_str()),
            escape(name)
        ));
    }
    let body = format!(
        r#"<h1>Tell us about a conflict — anonymously</h1>
<p>Our mediators step in before arguments turn into violence. You do not have to give your name.</p>
<p class="note">This page does not record your phone number, your internet address or your device, and sets no cookies. Leave out anything that could identify you unless you want us to know it.</p>
<form method="post" action="/tips" accept-charset="utf-8">
<label for="text">What is happening?</label>
<textarea id="text" name="text" required maxlength="{max_text_chars}" aria-describedby="text-hint"></textarea>
<p class="hint" id="text-hint">Who is involved (no names needed), what the conflict is about, and when.</p>
<label for="zone">Where?</label>
<select id="zone" name="zone">
{options}</select>
<fieldset>
<legend>How urgent is it?</legend>
<label class="choice"><input type="radio" name="urgency" value="now"> Happening now or about to happen</label>
<label class="choice"><input type="radio" name="urgency" value="today" checked> Could happen today</label>
<label class="choice"><input type="radio" name="urgency" value="fyi"> Just so you know</label>
</fieldset>
<button type="submit">Send tip</button>
</form>
<p class="note">If someone is hurt or in danger right now, call 911.</p>"#
    );
    layout("Send a tip", &body)
}

pub fn thanks() -> String {
    layout(
        "Tip received",
        r#"<h1>Thank you. Your tip reached the team.</h1>
<p>A mediator will look at it. We cannot reply on this page.</p>
<p class="note">If you share this phone, you may want to close this tab.</p>
<p><a href="/">Send another tip</a></p>"#,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_are_escaped() {
        let zones = vec![(
            Zone::parse("north").unwrap(),
            "<b>North & co</b>".to_owned(),
        )];
        let page = tip_form(&zones, 100);
        assert!(page.contains("&lt;b&gt;North &amp; co&lt;/b&gt;"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("value=\"unsure\""));
    }
}
