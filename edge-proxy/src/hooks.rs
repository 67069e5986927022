//! Operator hooks: run a command when a hardware link reports an event of a
//! chosen type, so an operator can be paged on `EVENT_POWER_CRITICAL` or
//! `EVENT_MAX_RETRIES_EXCEEDED` without watching a dashboard.
//!
//! ```toml
//! [[hooks]]
//! on = ["EVENT_POWER_CRITICAL", "EVENT_MAX_RETRIES_EXCEEDED"]
//! command = "notify-send \"$STATION_LINK: $STATION_EVENT\" \"$STATION_CONTEXT\""
//! ```
//!
//! The command runs with `sh -c` and these variables: `STATION_EVENT`,
//! `STATION_LINK`, `STATION_STATE`, `STATION_RECONNECTS`, `STATION_CONTEXT`.
//! A hook never blocks the link: it runs in the background, and a failure is
//! logged, not retried.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shared_protocol::link::LinkEvent;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Event types (`EVENT_*`) that trigger the command.
    pub on: Vec<String>,
    /// Shell command (`sh -c`).
    pub command: String,
}

#[derive(Debug, Clone, Default)]
pub struct Hooks(Arc<Vec<HookConfig>>);

impl Hooks {
    pub fn new(hooks: Vec<HookConfig>) -> Self {
        Hooks(Arc::new(hooks))
    }

    pub fn run(&self, link: &str, event: &LinkEvent) {
        let kind = event.kind.as_str();
        for hook in self.0.iter().filter(|h| h.on.iter().any(|o| o == kind)) {
            let mut command = tokio::process::Command::new("sh");
            command
                .arg("-c")
                .arg(&hook.command)
                .env("STATION_EVENT", kind)
                .env("STATION_LINK", link)
                .env("STATION_STATE", event.state.as_str())
                .env("STATION_RECONNECTS", event.reconnects.to_string())
                .env("STATION_CONTEXT", &event.context)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(false);
            let shown = hook.command.clone();
            match command.spawn() {
                Ok(mut child) => {
                    tokio::spawn(async move {
                        match child.wait().await {
                            Ok(status) if status.success() => {}
                            Ok(status) => tracing::warn!(hook = %shown, %status, "hook failed"),
                            Err(e) => tracing::warn!(hook = %shown, error = %e, "hook failed"),
                        }
                    });
                }
                Err(e) => tracing::warn!(hook = %shown, error = %e, "could not start hook"),
            }
        }
    }
}
