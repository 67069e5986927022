//! The programs connected to the rig port and the virtual serial port, for
//! `/stats`, `/metrics` and the dashboard's list: who they are (address,
//! the name they gave), their role, their last command and whether they
//! hold the transmitter. An entry lives as long as its [`Entry`] handle.

use std::sync::{Arc, Mutex};

use serde::Serialize;

/// What `/stats` shows of one program.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramStatus {
    /// `"rigctl"` (the TCP rig port) or `"virtual_cat"` (the serial port).
    pub port: &'static str,
    /// The program's address (`127.0.0.1:51234`) or the port's path.
    pub address: String,
    /// What the program said it is (`\client_version`), if it did.
    pub name: Option<String>,
    pub role: &'static str,
    pub last_command: Option<String>,
    /// It holds the transmitter (keyed through it, not yet released).
    pub keyed: bool,
    pub commands: u64,
    /// When it connected, on the proxy's clock (ms).
    pub connected_at_ms: u64,
}

#[derive(Default)]
struct Inner {
    next: u64,
    list: Vec<(u64, ProgramStatus)>,
}

/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Programs {
    inner: Arc<Mutex<Inner>>,
    /// Where the rig port listens and the virtual port's path, once running.
    listen: Arc<Mutex<(Option<String>, Option<String>)>>,
}

/// A command's text as shown: printable ASCII, at most 40 characters.
pub fn shown_command(line: &[u8]) -> String {
    line.iter()
        .take(40)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

impl Programs {
    pub fn set_listening(&self, rigctl: Option<String>, virtual_cat: Option<String>) {
        if let Ok(mut l) = self.listen.lock() {
            *l = (rigctl, virtual_cat);
        }
    }

    /// A program connected; it is listed until the handle is dropped.
    pub fn add(&self, status: ProgramStatus) -> Entry {
        let port = status.port;
        let id = self
            .inner
            .lock()
            .map(|mut i| {
                i.next += 1;
                let id = i.next;
                i.list.push((id, status));
                id
            })
            .unwrap_or(0);
        metrics::gauge!("rig_programs_connected", "port" => port).increment(1.0);
        Entry {
            programs: self.clone(),
            id,
            port,
        }
    }

    pub fn list(&self) -> Vec<ProgramStatus> {
        self.inner
            .lock()
            .map(|i| i.list.iter().map(|(_, s)| s.clone()).collect())
            .unwrap_or_default()
    }

    /// The `programs` section of `/stats`.
    pub fn describe(&self) -> serde_json::Value {
        let list = self.list();
        let (rigctl, virtual_cat) = self.listen.lock().map(|l| l.clone()).unwrap_or_default();
        serde_json::json!({
            "rigctl_listen": rigctl,
            "virtual_cat": virtual_cat,
            "connected": list.len(),
            "keyed": list.iter().filter(|p| p.keyed).count(),
            "list": list,
        })
    }
}

/// One listed program.
pub struct Entry {
    programs: Programs,
    id: u64,
    port: &'static str,
}

impl Entry {
    pub fn update(&self, f: impl FnOnce(&mut ProgramStatus)) {
        if let Ok(mut i) = self.programs.inner.lock() {
            if let Some((_, s)) = i.list.iter_mut().find(|(id, _)| *id == self.id) {
                f(s);
            }
        }
    }

    /// One command from the program.
    pub fn command(&self, line: &[u8], keyed: bool) {
        metrics::counter!("rig_commands_total", "port" => self.port).increment(1);
        self.update(|s| {
            s.commands += 1;
            s.last_command = Some(shown_command(line));
            s.keyed = keyed;
        });
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Ok(mut i) = self.programs.inner.lock() {
            i.list.retain(|(id, _)| *id != self.id);
        }
        metrics::gauge!("rig_programs_connected", "port" => self.port).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_listed_while_held() {
        let programs = Programs::default();
        let status = ProgramStatus {
            port: "rigctl",
            address: "127.0.0.1:5000".into(),
            name: None,
            role: "control",
            last_command: None,
            keyed: false,
            commands: 0,
            connected_at_ms: 0,
        };
        let a = programs.add(status.clone());
        let b = programs.add(status);
        a.command(b"T 1\x00", true);
        assert_eq!(programs.list().len(), 2);
        assert_eq!(programs.describe()["keyed"], 1);
        assert_eq!(programs.list()[0].last_command.as_deref(), Some("T 1."));
        drop(a);
        assert_eq!(programs.list().len(), 1);
        drop(b);
        assert!(programs.list().is_empty());
    }
}
