//! HTML pages of the tip site: plain, accessible, mobile-first, no script, no
//! third-party asset. The dynamic content is operator configuration (zone
//! names), the form's submission token and, only when the store's answer to
//! a tip was in doubt, that tip's own fields in the answer to the same
//! request, so it can be sent again: all escaped.

use super::submission::SubmissionToken;
use crate::domain::Zone;
use crate::html::{escape, layout};

/// A tip to show in the form again, with why, after the store's answer was
/// in doubt. The text is the tipster's own, sent back only in the answer to
/// their own request (escaped, `no-store`), so they can send it again.
pub struct Refill<'a> {
    pub text: &'a str,
    pub zone: &'a str,
    pub urgency: &'a str,
    pub notice: &'a str,
}

/// The tip form, rendered for each request: it carries a fresh submission
/// `token` (or, when shown again, the token the tip was first sent with).
pub fn tip_form(
    zones: &[(Zone, String)],
    max_text_chars: usize,
    token: &SubmissionToken,
    refill: Option<&Refill<'_>>,
) -> String {
    let zone_chosen = refill.map_or("unsure", |r| r.zone);
    let urgency_chosen = refill.map_or("today", |r| r.urgency);
    let selected = |chosen: bool| if chosen { " selected" } else { "" };
    let checked = |value: &str| {
        if value == urgency_chosen {
            " checked"
        } else {
            ""
        }
    };
    let mut options = format!(
        "<option value=\"unsure\"{}>Not sure</option>\n",
        selected(zone_chosen == "unsure")
    );
    for (zone, name) in zones {
        options.push_str(&format!(
            "<option value=\"{}\"{}>{}</option>\n",
            escape(zone.as_str()),
            selected(zone.as_str() == zone_chosen),
            escape(name)
        ));
    }
    let (heading, notice) = match refill {
        Some(r) => (
            "Your tip may not have been received",
            format!("<p class=\"alert\" role=\"alert\">{}</p>", escape(r.notice)),
        ),
        None => ("Tell us about a conflict — anonymously", String::new()),
    };
    let text = refill.map_or(String::new(), |r| escape(r.text));
    let (now, today, fyi) = (checked("now"), checked("today"), checked("fyi"));
    let token = escape(token.as_str());
    let body = format!(
        r#"<h1>{heading}</h1>
{notice}
<p>Our mediators step in before arguments turn into violence. You do not have to give your name.</p>
<p class="note">This page does not record your phone number, your internet address or your device, and sets no cookies. Leave out anything that could identify you unless you want us to know it.</p>
<form method="post" action="/tips" accept-charset="utf-8">
<input type="hidden" name="submission" value="{token}">
<label for="text">What is happening?</label>
<textarea id="text" name="text" required maxlength="{max_text_chars}" aria-describedby="text-hint">{text}</textarea>
<p class="hint" id="text-hint">Who is involved (no names needed), what the conflict is about, and when.</p>
<label for="zone">Where?</label>
<select id="zone" name="zone">
{options}</select>
<fieldset>
<legend>How urgent is it?</legend>
<label class="choice"><input type="radio" name="urgency" value="now"{now}> Happening now or about to happen</label>
<label class="choice"><input type="radio" name="urgency" value="today"{today}> Could happen today</label>
<label class="choice"><input type="radio" name="urgency" value="fyi"{fyi}> Just so you know</label>
</fieldset>
<button type="submit">Send tip</button>
</form>
<p class="note">If someone is hurt or in danger right now, call 911.</p>"#
    );
    layout(
        if refill.is_some() {
            "Not confirmed"
        } else {
            "Send a tip"
        },
        &body,
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_are_escaped() {
        let zones = vec![(
            Zone::parse("north").unwrap(),
            "<b>North & co</b>".to_owned(),
        )];
        let page = tip_form(&zones, 100, &SubmissionToken::random(), None);
        assert!(page.contains("&lt;b&gt;North &amp; co&lt;/b&gt;"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("value=\"unsure\" selected"));
        assert!(page.contains("value=\"today\" checked"));
    }

    #[test]
    fn a_form_shown_again_carries_the_tip_escaped_its_choices_and_its_token() {
        let zones = vec![(Zone::parse("north").unwrap(), "North".to_owned())];
        let token = SubmissionToken::random();
        let page = tip_form(
            &zones,
            100,
            &token,
            Some(&Refill {
                text: "</textarea><script>x</script>",
                zone: "north",
                urgency: "now",
                notice: "may not have been received",
            }),
        );
        assert!(page.contains("&lt;/textarea&gt;&lt;script&gt;x&lt;/script&gt;</textarea>"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("value=\"north\" selected"));
        assert!(page.contains("value=\"now\" checked"));
        assert!(!page.contains("value=\"today\" checked"));
        assert!(page.contains(&format!("name=\"submission\" value=\"{}\"", token.as_str())));
        assert!(page.contains("role=\"alert\">may not have been received"));
    }
}
