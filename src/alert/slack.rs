//! Slack incoming webhooks: the message of [`super::payload::slack`] POSTed to the hook URL.

use crate::store::Alert;

pub fn send(url: &str, alert: &Alert) -> Result<(), String> {
    let body = super::payload::slack(alert).to_string();
    super::webhook::post_json(url, &body, &[])
}
