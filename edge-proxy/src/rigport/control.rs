//! Carrying out a program's sets, the same way for the rig port and the
//! virtual serial port: every set is a command in the log, named after the
//! program (`by: "rig:127.0.0.1:51234 (WSJT-X)"`), so the radio link
//! applies it like a dashboard's, on whichever proxy owns the radio, and
//! every dashboard sees who tuned the radio. A set is confirmed when the
//! station's state (read back from the log) shows it.
//!
//! PTT goes through the TX watchdog with the program as keeper: a PTT-on
//! is refused while the time-out timer has it locked out, every command
//! the program sends keeps its transmission alive (and is repeated into
//! the log, for the radio link's backstop on another proxy), and when the
//! program goes away or silent the watchdog unkeys and names it.

use std::time::Duration;

use edge_proxy::rigcore::code;
use edge_proxy::rigcore::session::Set;
use edge_proxy::rigcore::station::Station;
use rmpv::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::eventlog::{EventLog, NewEvent};
use crate::watchdog::{Input, Watchdog};

/// Who a set comes from.
#[derive(Debug, Clone)]
pub struct Program {
    /// `rig:ADDRESS` or `cat:PATH`.
    pub id: String,
    /// What the program said it is.
    pub name: Option<String>,
}

impl Program {
    /// How the log and the watchdog name it.
    pub fn by(&self) -> String {
        match &self.name {
            Some(name) => format!("{} ({name})", self.id),
            None => self.id.clone(),
        }
    }
}

/// One program's hold on the transmitter.
#[derive(Debug, Default)]
pub struct Keyer {
    /// The watchdog's keeper name while this program holds the transmitter.
    keeper: Option<String>,
    /// When its PTT-on was last written to the log.
    logged: Option<Instant>,
}

impl Keyer {
    pub fn keyed(&self) -> bool {
        self.keeper.is_some()
    }
}

#[derive(Clone)]
pub struct Control {
    pub log: EventLog,
    pub watchdog: Watchdog,
    pub view: watch::Receiver<Station>,
    /// How long a set waits for the radio to show it.
    pub confirm: Duration,
    pub keepalive: Duration,
}

impl Control {
    async fn append(&self, event: NewEvent) -> Result<(), i32> {
        self.log.append(vec![event]).await.map(|_| ()).map_err(|e| {
            tracing::warn!(error = %e, "rig port: the log did not take a command");
            code::EIO
        })
    }

    /// Waits (bounded) until the station shows what `done` looks for.
    async fn confirmed(&self, done: impl Fn(&Station) -> bool) -> Result<(), i32> {
        let mut view = self.view.clone();
        let seen = tokio::time::timeout(self.confirm, async {
            view.wait_for(|s| done(s)).await.is_ok()
        })
        .await;
        match seen {
            Ok(true) => Ok(()),
            _ => Err(code::ETIMEOUT),
        }
    }

    /// Logs the set; with `confirm`, answers once the radio shows it.
    pub async fn carry_out(
        &self,
        who: &Program,
        keyer: &mut Keyer,
        set: Set,
        confirm: bool,
    ) -> Result<(), i32> {
        let by = who.by();
        let command = |kind: &str, fields: Vec<(&str, Value)>, volatile: bool| {
            let mut map: Vec<(Value, Value)> =
                fields.into_iter().map(|(k, v)| (k.into(), v)).collect();
            map.push(("by".into(), by.as_str().into()));
            let payload = Value::Map(map);
            if volatile {
                NewEvent::volatile(kind, payload)
            } else {
                NewEvent::reliable(kind, payload)
            }
        };
        match set {
            Set::Freq(hz) => {
                self.append(command("radio.set_freq", vec![("hz", hz.into())], false))
                    .await?;
                tracing::info!(program = %by, hz, "rig port: set frequency");
                if confirm {
                    return self.confirmed(|s| s.freq_hz == Some(hz)).await;
                }
            }
            Set::Mode { mode, data } => {
                self.append(command(
                    "radio.set_mode",
                    vec![("mode", mode.into()), ("data", data.into())],
                    false,
                ))
                .await?;
                tracing::info!(program = %by, mode, data, "rig port: set mode");
                if confirm {
                    return self
                        .confirmed(|s| {
                            s.mode
                                .as_deref()
                                .is_some_and(|m| m.eq_ignore_ascii_case(mode))
                                && s.data() == data
                        })
                        .await;
                }
            }
            Set::Ptt(true) => {
                // The time-out timer's lock-out, where the command enters.
                if !self.watchdog.admit_ptt_on(&by) {
                    tracing::warn!(program = %by, "rig port: PTT-on refused (time-out timer)");
                    return Err(code::ERJCTED);
                }
                self.append(command("radio.ptt", vec![("on", true.into())], true))
                    .await?;
                self.watchdog.report(Input::PttOn(by.clone()));
                tracing::info!(program = %by, "rig port: PTT on");
                keyer.keeper = Some(by);
                keyer.logged = Some(Instant::now());
                if confirm {
                    return self.confirmed(|s| s.ptt).await;
                }
            }
            Set::Ptt(false) => {
                // Off always goes through, keeper or not.
                let result = self
                    .append(command("radio.ptt", vec![("on", false.into())], false))
                    .await;
                if let Some(keeper) = keyer.keeper.take() {
                    self.watchdog.report(Input::PttOff(keeper));
                }
                keyer.logged = None;
                result?;
                tracing::info!(program = %by, "rig port: PTT off");
                if confirm {
                    return self.confirmed(|s| !s.ptt).await;
                }
            }
        }
        Ok(())
    }

    /// The program sent something: it is alive. While it holds the
    /// transmitter, that keeps the transmission going (the watchdog, and a
    /// PTT-on repeated into the log a few times per keepalive for the radio
    /// link's own backstop); once the watchdog let it go, it holds nothing.
    pub async fn alive(&self, keyer: &mut Keyer) {
        let Some(keeper) = keyer.keeper.clone() else {
            return;
        };
        if !self.watchdog.refresh(&keeper) {
            keyer.keeper = None;
            keyer.logged = None;
            return;
        }
        let due = keyer
            .logged
            .is_none_or(|at| at.elapsed() >= self.keepalive / 3);
        if due {
            let on = NewEvent::volatile(
                "radio.ptt",
                Value::Map(vec![
                    ("on".into(), true.into()),
                    ("by".into(), keeper.as_str().into()),
                ]),
            );
            if self.append(on).await.is_ok() {
                keyer.logged = Some(Instant::now());
            }
        }
    }

    /// The program went away: if it held the transmitter, the watchdog
    /// unkeys now (straight to the radio) and names it.
    pub fn ended(&self, keyer: &mut Keyer) {
        if let Some(keeper) = keyer.keeper.take() {
            tracing::warn!(program = %keeper, "rig port: a program holding PTT went away");
            self.watchdog.report(Input::SessionEnded(keeper));
        }
    }
}
