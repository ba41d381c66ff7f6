//! `cronmgr alert test CHANNEL`: send a test message now and say whether it arrived.

use chrono::Utc;
use clap::Subcommand;

use super::Ctx;
use crate::alert::delivery;
use crate::invalid;
use crate::model::redact;
use crate::output;
use crate::store::{Alert, AlertKind, AlertState, Channel};
use crate::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Send a test alert on one channel (email, slack or webhook), synchronously; exit 1 if it fails
    Test {
        /// email, slack or webhook
        channel: String,
        /// Send to this address or URL instead of the system's setting
        #[arg(long)]
        to: Option<String>,
    },
}

/// `alert test --json`: whether the test alert went out, and if not why.
#[derive(serde::Serialize)]
struct Tested<'a> {
    channel: Channel,
    /// The address or URL, its secrets redacted.
    target: &'a str,
    ok: bool,
    error: Option<String>,
}

pub fn run(args: Args, ctx: &Ctx) -> crate::exit::Result<ExitCode> {
    let Action::Test { channel, to } = args.action;
    let channel: Channel = channel.parse().map_err(crate::exit::Failure::usage)?;
    let store = ctx.store()?;
    let settings = store.settings(ctx.system())?;
    let configured = match channel {
        Channel::Email => settings.alert_email.clone(),
        Channel::Slack => settings.slack_webhook.clone(),
        Channel::Webhook => settings.webhook_url.clone(),
    };
    let Some(target) = to.or(configured) else {
        let key = match channel {
            Channel::Email => "alert_email",
            Channel::Slack => "slack_webhook",
            Channel::Webhook => "webhook_url",
        };
        invalid!(
            "no {channel} target: set it with `cronmgr settings set {key} VALUE` or pass --to"
        );
    };
    let smtp = ctx
        .config()?
        .smtp
        .clone()
        .with_env()
        .map_err(crate::exit::Failure::usage)?;
    let now = Utc::now();
    let alert = Alert {
        id: 0,
        system: settings.system.clone(),
        job_id: None,
        job: Some("cronmgr-test".into()),
        kind: AlertKind::Failed,
        state: AlertState::Firing,
        summary: format!("test alert from cronmgr (system {})", settings.system),
        details: serde_json::json!({
            "status": "failed", "attempt": 1, "duration_ms": 1234, "exit_code": 1,
            "error": "this is a test", "output_tail": "no job ran: this is a test message\n",
            "test": true
        }),
        execution_id: None,
        created_at: now,
        resolved_at: None,
        deliveries: Vec::new(),
    };
    let shown = redact::list(&target);
    let result = delivery::send(channel, &target, &alert, &settings, &smtp, now);
    if ctx.global.json {
        output::json(&Tested {
            channel,
            target: &shown,
            ok: result.is_ok(),
            error: result.as_ref().err().map(|e| e.to_string()),
        })?;
    }
    match result {
        Ok(()) => {
            if !ctx.global.json {
                output::text(&format!("sent a test alert by {channel} to {shown}"))?;
            }
            Ok(ExitCode::Ok)
        }
        Err(e) => crate::fail!("test alert by {channel} to {shown} failed: {e}"),
    }
}
