//! The radio link. `LinkManager` decides when to open, retry and give up;
//! this task carries it out with the configured backend (Kenwood CAT on a
//! serial port, or Hamlib's rigctld), turns the radio's state into
//! `radio.state` events (on change; the last one is in every snapshot),
//! applies `radio.*` commands read from the log, and, with `meter = "radio"`,
//! reads forward power from the radio's own meter.
//!
//! The state comes from polls and, from a Kenwood in auto-information
//! mode (`radio_auto_info`), from the radio's own reports, logged the
//! moment they arrive; polls are then a slow check. When to poll is
//! `shared_protocol::radiopoll`'s (fast while keyed, adaptive without
//! reports). Polls and reports reach `radio.state` through one path
//! ([`RadioTask::report`]) in the order the radio said them, so an answer
//! never overwrites a newer report. Only a poll judges a TX drop by the
//! radio saying receive: a report may have been said before the radio took
//! a `TX;`, so one that says receive while keyed asks for a poll at once.
//!
//! A TX drop is declared, and the fast path taken, when the radio reports
//! receive while a transmission the bridge keyed is in progress, when its
//! answer stops half-way (or never comes) while keyed, or when the power
//! meter goes critical on the air. The bridge never re-keys by itself.
//!
//! Safety is checked against the radio, not the log (docs/SAFETY.md):
//! - every exchange with the radio is bounded ([`EXCHANGE_TIMEOUT`]), and the
//!   loop never waits for the log (events go through [`LogQueue`]);
//! - the TX watchdog's unkeys arrive on a channel of their own and go to the
//!   radio at once, whatever the log is doing;
//! - when the link (re)opens and the radio reports transmitting with nobody
//!   keying it here (after a crash, a restart, a cable replugged), it is
//!   unkeyed at once (`no_keeper_at_start`);
//! - at shutdown the task unkeys a transmitting radio and waits (bounded)
//!   for it to report receive before it closes the port;
//! - a backstop watchdog here covers transmissions keyed through another
//!   proxy of a shared log, with its own time-out lock-out;
//! - a PTT-on is keyed only if it is fresh by this proxy's clock, judged
//!   with what the log's timestamps say of the clock of the proxy that
//!   logged it (`shared_protocol::peerclock`), never by comparing clocks.

use std::sync::Arc;
use std::time::Duration;

use rmpv::Value;
use shared_protocol::link::{LinkConfig, LinkState};
use shared_protocol::peerclock::PeerClock;
use shared_protocol::radiopoll::{PollConfig, PollPlan};
use shared_protocol::txwatchdog::{TxWatchdog, TxWatchdogConfig, UnkeyReason};
use shared_protocol::Millis;
use tokio::sync::{mpsc, watch};

use super::logq::LogQueue;
use super::power::{PowerSettings, PowerWatch, SharedPower};
use super::smeter::SMeter;
use super::{is_reconnect, new_status, payload_of, HwLink, SharedStatus};
use crate::clock::Clock;
use crate::eventlog::{EventLog, Logged, NewEvent};
use crate::hooks::Hooks;
use edge_proxy::hardware::{Radio, RadioBackend, RadioError, RadioStatus};

const NAME: &str = "radio";

/// How long one CAT or rigctld answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one whole exchange (write and answer) may take before the link
/// is declared hung: the loop must come back to its timers and its unkeys.
const EXCHANGE_TIMEOUT: Duration = Duration::from_millis(1_500);
/// At shutdown, how long the radio has to report receive after the unkey.
const SHUTDOWN_CONFIRM: Duration = Duration::from_secs(2);
/// How long to wait before reading the log again after a read error.
const READ_RETRY: Duration = Duration::from_millis(100);
/// The backstop's keeper: every PTT-on read from the log.
const LOG_KEEPER: &str = "log";
/// Origins whose clocks are tracked at most (proxies of a shared log).
const MAX_ORIGINS: usize = 32;

pub struct RadioSettings {
    pub backend: RadioBackend,
    pub port: String,
    pub baud: u32,
    pub poll: Duration,
    /// Poll this often while a transmission the bridge keyed is on, so a TX
    /// drop is seen within it.
    pub poll_on_air: Duration,
    /// Ask a Kenwood to report its changes itself (`AI2;`).
    pub auto_info: bool,
    /// Read forward power from the radio's own meter this often.
    pub meter_poll: Option<Duration>,
    pub power: PowerSettings,
    pub link: LinkConfig,
    /// The TX watchdog's limits. The proxy whose session keyed the radio
    /// enforces them first (`crate::watchdog`); the bridge, which may be on
    /// another proxy of a shared log, is the backstop at twice the
    /// keepalive (and the maximum plus one keepalive), so a transmitter
    /// keyed through a proxy that then died is still released.
    pub tx_keepalive: Duration,
    pub tx_max: Duration,
}

/// What the rest of the proxy holds of the running radio link.
pub struct RadioHandle {
    pub status: SharedStatus,
    pub power: Option<SharedPower>,
    /// Whether the radio reports transmitting (from the last poll).
    pub on_air: watch::Receiver<bool>,
    /// Tells the radio link about a TX drop seen elsewhere (the power meter).
    pub tx_drop: mpsc::Sender<String>,
    /// Unkey now, for this reason: the TX watchdog's direct line, which
    /// does not go through the log.
    pub unkey: mpsc::Sender<String>,
    /// Ends after shutdown, once the radio was left in receive (or could
    /// not be reached) and the port closed.
    pub done: tokio::task::JoinHandle<()>,
}

pub fn start(
    settings: RadioSettings,
    log: EventLog,
    queue: LogQueue,
    clock: Clock,
    hooks: Hooks,
    shutdown: watch::Receiver<bool>,
) -> RadioHandle {
    let backend = format!("{:?}", settings.backend).to_lowercase();
    let status = new_status(&backend, &settings.port);
    let power = settings
        .meter_poll
        .map(|_| PowerWatch::new("radio", settings.power, queue.clone()));
    let (on_air_tx, on_air) = watch::channel(false);
    let (tx_drop, tx_drop_rx) = mpsc::channel(8);
    let (unkey, unkey_rx) = mpsc::channel(8);
    let serial = (settings.backend == RadioBackend::Kenwood).then_some(settings.port.as_str());
    let hw = HwLink::new(
        NAME,
        settings.link.clone(),
        status.clone(),
        serial,
        queue.clone(),
        hooks,
        clock,
    );
    let keepalive = settings.tx_keepalive.as_millis() as u64;
    let backstop = TxWatchdog::new(TxWatchdogConfig {
        keepalive_ms: 2 * keepalive,
        max_tx_ms: settings.tx_max.as_millis() as u64 + keepalive,
    });
    let power_status = power.as_ref().map(PowerWatch::status);
    let plan = PollPlan::new(poll_config(&settings), false);
    let task = RadioTask {
        plan,
        settings,
        log,
        queue,
        clock,
        power,
        on_air: on_air_tx,
        hw,
        radio: None,
        last: None,
        keyed: false,
        smeter: SMeter::default(),
        backstop,
        ptt_floor: 0,
        origins: Vec::new(),
        read_retry: None,
    };
    let done = tokio::spawn(task.run(shutdown, tx_drop_rx, unkey_rx));
    RadioHandle {
        status,
        power: power_status,
        on_air,
        tx_drop,
        unkey,
        done,
    }
}

struct RadioTask {
    /// When the radio's state and its S-meter are read.
    plan: PollPlan,
    settings: RadioSettings,
    log: EventLog,
    queue: LogQueue,
    clock: Clock,
    power: Option<PowerWatch>,
    on_air: watch::Sender<bool>,
    hw: HwLink,
    radio: Option<Radio>,
    last: Option<RadioStatus>,
    /// A transmission the bridge keyed and nobody has released yet.
    keyed: bool,
    /// The receive S-meter's reads and what of them was logged.
    smeter: SMeter,
    /// The backstop watchdog over PTT-ons read from the log.
    backstop: TxWatchdog,
    /// PTT-ons logged at or before this `seq` are superseded by an unkey
    /// the watchdog sent straight to the radio.
    ptt_floor: u64,
    /// What each origin's timestamps say of its clock (see the module doc).
    origins: Vec<(Option<Arc<str>>, PeerClock)>,
    /// After a read error, the log is read again from here on.
    read_retry: Option<tokio::time::Instant>,
}

/// Opens the link and identifies the radio (the caller bounds it).
async fn open(s: &RadioSettings) -> Result<Radio, RadioError> {
    Radio::open(s.backend, &s.port, s.baud, ANSWER_TIMEOUT, s.auto_info).await
}

fn poll_config(s: &RadioSettings) -> PollConfig {
    let mut config = PollConfig::with(s.poll.as_millis() as u64, s.poll_on_air.as_millis() as u64);
    config.smeter_ms = super::smeter::PERIOD.as_millis() as u64;
    config
}

/// Runs one exchange with the radio, bounded.
async fn bounded<T>(
    exchange: impl std::future::Future<Output = Result<T, RadioError>>,
) -> Result<T, RadioError> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .unwrap_or(Err(RadioError::Hung(EXCHANGE_TIMEOUT)))
}

impl RadioTask {
    async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        mut tx_drops: mpsc::Receiver<String>,
        mut unkeys: mpsc::Receiver<String>,
    ) {
        let mut cursor = self.log.head() + 1;
        let mut head = self.log.subscribe();
        let mut failed_tick = tokio::time::interval(Duration::from_secs(1));
        let mut meter_tick = self.clock.ticker(
            self.settings
                .meter_poll
                .unwrap_or(Duration::from_secs(3600)),
        );
        self.hw.link.start(self.clock.now());
        loop {
            if *shutdown.borrow() {
                return self.shut_down().await;
            }
            self.carry_out().await;
            let wake = self
                .hw
                .link
                .poll_timeout()
                .map(|at| self.clock.instant_at(at));
            let connected = self.radio.is_some();
            // On the clock's grid, so the polls of both links and the
            // maintenance tick share their wake-ups.
            let next_poll = self.clock.poll_at(
                self.plan.poll_timeout(self.keyed),
                self.plan.period(self.clock.now(), self.keyed),
            );
            // Commands are read in batches; more may be waiting.
            let behind = cursor <= self.log.head() && self.read_retry.is_none();
            let read_retry = self.read_retry;
            // The one borrow the branches hold across the wait (the others
            // are of locals), so a handler may use all of `self`.
            let radio = &mut self.radio;
            tokio::select! {
                biased;
                _ = shutdown.changed() => return self.shut_down().await,
                Some(reason) = unkeys.recv() => self.unkey_for_watchdog(&reason).await,
                _ = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {
                    self.hw.link.handle_timeout(self.clock.now());
                }
                _ = tokio::time::sleep_until(next_poll), if connected => self.tick().await,
                _ = meter_tick.tick(), if connected && self.power.is_some() => self.read_power().await,
                Some(context) = tx_drops.recv() => self.tx_drop(&context),
                _ = failed_tick.tick(), if self.hw.link.state() == LinkState::Failed => self.hw.check_failed(),
                _ = async { tokio::time::sleep_until(read_retry.unwrap_or_else(tokio::time::Instant::now)).await }, if read_retry.is_some() => {
                    self.read_retry = None;
                }
                _ = std::future::ready(()), if behind => {
                    let applied;
                    (cursor, applied) = self.commands(cursor).await;
                    if applied {
                        // Show the effect at once rather than at the next poll.
                        self.plan.poll_now(self.clock.now());
                    }
                }
                // What the radio says by itself (and a line that died
                // between polls), the moment it arrives; after the timers
                // and the commands, so a radio that never stops talking
                // cannot hold up a PTT-off.
                said = async {
                    match radio.as_mut() {
                        Some(radio) => radio.changed().await,
                        None => std::future::pending().await,
                    }
                }, if connected => self.reported(said),
                _ = head.changed(), if !behind => {}
            }
        }
    }

    /// Carries out what the link manager decided; on a new connection, makes
    /// sure the radio is not transmitting for nobody.
    async fn carry_out(&mut self) {
        let settings = &self.settings;
        if self.hw.carry_out(&mut self.radio, || open(settings)).await {
            // A new connection: its first state is news, and nothing it
            // does was keyed by this connection.
            self.last = None;
            self.keyed = false;
            self.smeter.reset();
            let reports = self.radio.as_ref().is_some_and(Radio::reports);
            self.plan = PollPlan::new(poll_config(&self.settings), reports);
            if let Some(radio) = &self.radio {
                let period = self.plan.period(self.clock.now(), false);
                match (reports, radio) {
                    (true, _) => tracing::info!(
                        link = NAME,
                        check_ms = period,
                        "the radio reports its changes itself (AI2): polled only as a check"
                    ),
                    (false, Radio::Kenwood(_)) if self.settings.auto_info => tracing::warn!(
                        link = NAME,
                        "the radio did not take auto information (AI2;): polling it instead"
                    ),
                    _ => {}
                }
            }
            if self.radio.is_some() {
                self.unkey_if_on_air("no_keeper_at_start").await;
            }
        }
    }

    /// The radio reports transmitting and nobody here keyed it: unkey it,
    /// confirm, and tell the dashboards.
    async fn unkey_if_on_air(&mut self, reason: &'static str) {
        let Some(radio) = self.radio.as_mut() else {
            return;
        };
        match bounded(radio.status()).await {
            Ok(state) if state.ptt => {
                tracing::warn!(
                    link = NAME,
                    port = %self.settings.port,
                    reason,
                    "EVENT_TX_WATCHDOG: the radio is transmitting and nobody here keyed it: unkeying"
                );
                let confirmed = self.unkey_and_confirm(SHUTDOWN_CONFIRM).await;
                self.note_unkeyed(reason, 0, Some(confirmed));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not read the radio's state after opening it")
            }
        }
    }

    /// Sends PTT-off until the radio reports receive, for at most `within`.
    /// Returns whether it did.
    async fn unkey_and_confirm(&mut self, within: Duration) -> bool {
        self.released();
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            let Some(radio) = self.radio.as_mut() else {
                return false;
            };
            let off = bounded(radio.set_ptt(false)).await;
            match bounded(radio.status()).await {
                Ok(state) if !state.ptt => {
                    self.on_air
                        .send_if_modified(|on| std::mem::replace(on, false));
                    return true;
                }
                other => {
                    tracing::warn!(unkey = ?off.err(), status = ?other.err(), "the radio has not confirmed receive yet")
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Nothing keyed here any more, by whatever means.
    fn released(&mut self) {
        self.keyed = false;
        self.backstop.on_unkeyed();
    }

    /// One PTT-off to the radio, bounded; a dead line is reported to the
    /// link manager like any other exchange.
    async fn send_unkey(&mut self, reason: &str) {
        let Some(radio) = self.radio.as_mut() else {
            return;
        };
        if let Err(e) = bounded(radio.set_ptt(false)).await {
            tracing::error!(error = %e, reason, "could not unkey the radio");
            if e.link_down() {
                self.hw.link.lost(self.clock.now(), &e.to_string());
            }
        }
    }

    /// An unkey of the radio link's own: counted, logged, and the
    /// `watchdog.unkeyed` notice for the dashboards (through the queue),
    /// with whether the radio confirmed receive when that was asked.
    fn note_unkeyed(&self, reason: &'static str, transmitted_ms: u64, confirmed: Option<bool>) {
        metrics::counter!("proxy_tx_watchdog_unkeys_total", "reason" => reason).increment(1);
        match confirmed {
            Some(false) => tracing::error!(
                link = NAME,
                port = %self.settings.port,
                reason,
                "EVENT_TX_WATCHDOG: the radio did not confirm receive: check it now"
            ),
            _ => tracing::warn!(
                link = NAME,
                reason,
                transmitted_ms,
                "EVENT_TX_WATCHDOG: the radio is unkeyed"
            ),
        }
        let mut notice = crate::watchdog::notice("", reason, transmitted_ms);
        if let (Some(confirmed), Value::Map(fields)) = (confirmed, &mut notice.payload) {
            fields.push(("confirmed".into(), confirmed.into()));
        }
        self.queue.push(notice);
    }

    /// The proxy is stopping: leave the radio in receive, then close.
    async fn shut_down(mut self) {
        if self.radio.is_none() {
            // The link is down (reconnecting): one bounded try to reach the
            // radio, so a transmitter keyed before the link dropped is not
            // left on.
            self.radio = tokio::time::timeout(Duration::from_secs(1), open(&self.settings))
                .await
                .ok()
                .and_then(Result::ok);
        }
        let on_air = match self.radio.as_mut() {
            Some(radio) => bounded(radio.status()).await.map_or(true, |s| s.ptt),
            None => false,
        };
        if self.keyed || on_air {
            tracing::warn!(
                link = NAME,
                "EVENT_TX_WATCHDOG: shutting down while transmitting: unkeying the radio"
            );
            let confirmed = self.unkey_and_confirm(SHUTDOWN_CONFIRM).await;
            self.note_unkeyed("shutting_down", 0, Some(confirmed));
            self.queue.flush(Duration::from_millis(500)).await;
        }
        // The radio's own settings as they were found (its AI), after the
        // unkey and bounded: a program opening the port next is not met
        // by reports it did not ask for.
        if let Some(radio) = self.radio.as_mut() {
            if let Err(e) = bounded(radio.close()).await {
                tracing::debug!(error = %e, "could not restore the radio's auto information");
            }
        }
        // Dropping the task closes the port.
    }

    /// The TX watchdog decided to unkey: straight to the radio.
    async fn unkey_for_watchdog(&mut self, reason: &str) {
        // Whatever PTT-on is already in the log is older than this decision.
        self.ptt_floor = self.log.head();
        self.released();
        self.send_unkey(reason).await;
    }

    fn tx_drop(&mut self, context: &str) {
        self.released();
        self.hw.link.tx_drop(self.clock.now(), context);
    }

    /// Unkeys a transmission nobody keeps alive any more (see
    /// [`RadioSettings::tx_keepalive`]).
    async fn backstop_watchdog(&mut self) {
        let Some(unkey) = self.backstop.handle_timeout(self.clock.now()) else {
            return;
        };
        let reason = match unkey.reason {
            UnkeyReason::MaxTxTime => "max_on_air",
            _ => "keepalive_lost",
        };
        self.keyed = false;
        self.send_unkey(reason).await;
        self.note_unkeyed(reason, unkey.transmitted_ms, None);
    }

    /// A wake-up of the poll timer: what the plan says is due.
    async fn tick(&mut self) {
        let due = self.plan.due(self.clock.now(), self.keyed);
        if due.status {
            self.poll().await;
            self.backstop_watchdog().await;
            self.plan.polled(self.clock.now(), self.keyed);
        }
        if due.smeter {
            self.plan.smeter_read(self.clock.now());
            // Not in the middle of a TX drop's reconnect.
            if self.radio.is_some() && self.hw.link.state() == LinkState::Connected {
                self.read_smeter().await;
            }
        }
    }

    async fn poll(&mut self) {
        let Some(radio) = self.radio.as_mut() else {
            return;
        };
        match bounded(radio.status()).await {
            Ok(state) => self.report(state, true),
            Err(e) if self.keyed && e.link_down() => {
                self.tx_drop(&format!("{e}, while transmitting"))
            }
            Err(e) if e.link_down() => self.hw.link.lost(self.clock.now(), &e.to_string()),
            // One malformed answer: skip this poll; persistent trouble shows
            // in the link's health (no data).
            Err(e) => tracing::warn!(error = %e, "radio poll"),
        }
    }

    /// The radio said something by itself (or its line failed between
    /// exchanges).
    fn reported(&mut self, said: Result<RadioStatus, RadioError>) {
        match said {
            Ok(state) => self.report(state, false),
            Err(e) if self.keyed && e.link_down() => {
                self.tx_drop(&format!("{e}, while transmitting"))
            }
            Err(e) if e.link_down() => self.hw.link.lost(self.clock.now(), &e.to_string()),
            Err(e) => tracing::warn!(error = %e, "radio report"),
        }
    }

    /// The radio's state, from a poll's answer (`polled`) or from its own
    /// report: the one path into `radio.state`, taken in the order the
    /// radio said things, so the dashboards never see an older state after
    /// a newer one.
    fn report(&mut self, state: RadioStatus, polled: bool) {
        let now = self.clock.now();
        self.hw.link.data(now);
        self.on_air
            .send_if_modified(|on| std::mem::replace(on, state.ptt) != state.ptt);
        let says_rx_while_keyed = self.keyed && !state.ptt;
        if self.last.as_ref() != Some(&state) {
            self.queue.push(NewEvent::reliable(
                "radio.state",
                Value::Map(vec![
                    ("freq_hz".into(), state.freq_hz.into()),
                    ("mode".into(), state.mode.as_str().into()),
                    ("ptt".into(), state.ptt.into()),
                ]),
            ));
            self.last = Some(state);
            self.plan.changed(now);
        }
        if says_rx_while_keyed {
            if polled {
                self.tx_drop("the radio reports RX while keyed");
            } else {
                // A report may predate the radio taking our `TX;`: a poll,
                // asked after it, judges.
                self.plan.poll_now(now);
            }
        }
    }

    /// The receive S-meter: never while the radio reports transmitting or
    /// a transmission keyed here is on.
    async fn read_smeter(&mut self) {
        let on_air = self.keyed || self.last.as_ref().is_none_or(|s| s.ptt);
        let Some(radio) = self.radio.as_mut().filter(|_| !on_air) else {
            return;
        };
        match bounded(radio.strength_db()).await {
            Ok(db) => {
                self.hw.link.data(self.clock.now());
                if let Some(event) = self.smeter.reading(db) {
                    self.queue.push(event);
                }
            }
            Err(e) if e.link_down() => self.hw.link.lost(self.clock.now(), &e.to_string()),
            // A radio without an S-meter on CAT, or one odd answer: the
            // dashboards keep the last reading.
            Err(e) => tracing::debug!(error = %e, "S-meter read"),
        }
    }

    /// The radio's own meter (`meter = "radio"`).
    async fn read_power(&mut self) {
        let (Some(radio), Some(power)) = (self.radio.as_mut(), self.power.as_mut()) else {
            return;
        };
        let on_air = self.last.as_ref().is_some_and(|s| s.ptt);
        // Receiving, the meter shows the S-meter, not power.
        let watts = if on_air {
            match bounded(radio.power_watts()).await {
                Ok(w) => w,
                Err(e) if e.link_down() => {
                    self.hw.link.lost(self.clock.now(), &e.to_string());
                    return;
                }
                Err(_) => f64::NAN,
            }
        } else {
            0.0
        };
        let now = self.clock.now();
        if let Some(context) = power.reading(&mut self.hw.link, now, watts, None, on_air) {
            self.tx_drop(&context);
        }
    }

    /// Whether a PTT-on logged at `event.ts_ms` (its origin's clock) is still
    /// fresh by this proxy's clock: within one keepalive of being logged,
    /// relative to the fastest event seen from that origin (the event itself
    /// was sampled already). The first event of an origin has no earlier one
    /// to be compared with: on a shared log it is judged by that proxy's
    /// clock ticks (heard each second, see `eventlog/peers.rs`); only an
    /// origin not heard from at all is judged by the wall clocks, which must
    /// then agree within the keepalive (docs/SAFETY.md).
    fn fresh(&mut self, event: &Logged, now: Millis) -> bool {
        let keepalive = self.settings.tx_keepalive.as_millis() as u64;
        let clock = self.origin_clock(&event.origin);
        if clock.samples() < 2 {
            let by_ticks = event
                .origin
                .as_deref()
                .and_then(|origin| self.log.peer_age(origin, event.ts_ms));
            let age = by_ticks.unwrap_or_else(|| crate::eventlog::now_ms().abs_diff(event.ts_ms));
            return age <= keepalive;
        }
        clock
            .to_local(event.ts_ms.saturating_add(keepalive), now)
            .is_some_and(|until| now < until)
    }

    fn origin_clock(&mut self, origin: &Option<Arc<str>>) -> &mut PeerClock {
        let at = match self.origins.iter().position(|(o, _)| o == origin) {
            Some(at) => at,
            None => {
                // The window: a clock stepped back is followed within a minute.
                let clock = PeerClock::new(60_000);
                shared_protocol::push_bounded(
                    &mut self.origins,
                    MAX_ORIGINS,
                    (origin.clone(), clock),
                );
                self.origins.len() - 1
            }
        };
        &mut self.origins[at].1
    }

    /// Applies the commands logged since `cursor` (a batch); returns the new
    /// cursor and whether a command reached the radio.
    async fn commands(&mut self, mut cursor: u64) -> (u64, bool) {
        let events = match self.log.read(cursor, 256) {
            Ok(events) if !events.is_empty() => events,
            Ok(_) => return (self.skip_lost(cursor).await, false),
            Err(e) => {
                // Read again shortly: skipping ahead could lose a PTT-off.
                tracing::warn!(error = %e, cursor, "could not read commands from the log; retrying");
                self.read_retry = Some(tokio::time::Instant::now() + READ_RETRY);
                return (cursor, false);
            }
        };
        let now = self.clock.now();
        let mut applied = false;
        for event in &events {
            cursor = event.seq + 1;
            // Every event is a sample of its origin's clock.
            self.origin_clock(&event.origin).sample(event.ts_ms, now);
            // Commands only: not what the radio link itself reported.
            let relevant = (event.kind.starts_with("radio.")
                && !crate::auth::is_reserved_kind(&event.kind))
                || &*event.kind == "link.reconnect";
            let Some((kind, payload)) = relevant.then(|| payload_of(event)).flatten() else {
                continue;
            };
            if is_reconnect(&kind, &payload, NAME) {
                tracing::info!("operator asked to reconnect the radio");
                self.released();
                self.hw.link.force_reconnect(self.clock.now());
                continue;
            }
            if self.radio.is_none() {
                tracing::warn!(%kind, "radio command while the radio link is down: not applied");
                continue;
            }
            if kind == "radio.ptt" && !self.ptt_allowed(event, &payload, now) {
                continue;
            }
            applied = true;
            let Some(radio) = self.radio.as_mut() else {
                continue;
            };
            if let Err(err) = bounded(apply(radio, &kind, &payload)).await {
                tracing::warn!(%kind, error = %err, "radio command failed");
                if err.link_down() {
                    self.hw.link.lost(self.clock.now(), &err.to_string());
                }
            }
        }
        (cursor, applied)
    }

    /// Whether a logged PTT command may reach the radio; keeps the backstop
    /// up to date. A PTT-off always may.
    fn ptt_allowed(&mut self, event: &Logged, payload: &Value, now: Millis) -> bool {
        if !shared_protocol::keys_transmitter(&event.kind, payload) {
            self.backstop.on_ptt_off(LOG_KEEPER);
            self.keyed = false;
            return true;
        }
        if event.seq <= self.ptt_floor {
            tracing::info!(
                seq = event.seq,
                "a PTT-on older than the watchdog's unkey: not keyed"
            );
            return false;
        }
        if !self.fresh(event, now) {
            // Held up on its way here (an outage of the shared log):
            // keying now would transmit for someone no longer there.
            tracing::warn!(
                seq = event.seq,
                origin = event.origin.as_deref().unwrap_or("this proxy"),
                "a PTT-on that reached the radio too late: not keyed"
            );
            return false;
        }
        if !self.backstop.admit_ptt_on(LOG_KEEPER, now)
            || self.backstop.on_ptt_on(LOG_KEEPER, now).is_some()
        {
            tracing::warn!(
                seq = event.seq,
                "the time-out timer fired: PTT-on refused until released"
            );
            return false;
        }
        self.keyed = true;
        true
    }

    /// Nothing at `cursor`: either nothing new, or the log dropped events
    /// before the bridge read them (trimmed, or a stream's limits). Then a
    /// PTT-off may have been among them: a keyed transmitter is unkeyed.
    async fn skip_lost(&mut self, cursor: u64) -> u64 {
        let head = self.log.head();
        let oldest = self.log.oldest().unwrap_or(head + 1);
        let resume = oldest.max(cursor).min(head + 1);
        if resume > cursor && self.keyed {
            tracing::warn!(
                from = cursor,
                to = resume - 1,
                "commands left the log before the radio link read them: unkeying to be safe"
            );
            let confirmed = self.unkey_and_confirm(SHUTDOWN_CONFIRM).await;
            self.note_unkeyed("log_gap", 0, Some(confirmed));
        }
        // Past the head only when there is nothing to read at all.
        if resume == cursor && cursor <= head {
            head + 1
        } else {
            resume
        }
    }
}

async fn apply(radio: &mut Radio, kind: &str, payload: &Value) -> Result<(), RadioError> {
    match kind {
        "radio.set_freq" => match payload["hz"].as_u64() {
            Some(hz) => radio.set_frequency(hz).await,
            None => Err(RadioError::BadCommand("radio.set_freq without hz".into())),
        },
        "radio.set_mode" => match payload["mode"].as_str() {
            Some(mode) => radio.set_mode(mode).await,
            None => Err(RadioError::BadCommand("radio.set_mode without mode".into())),
        },
        "radio.ptt" => {
            radio
                .set_ptt(shared_protocol::keys_transmitter(kind, payload))
                .await
        }
        _ => Ok(()),
    }
}
