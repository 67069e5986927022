//! A real edge-proxy process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: `EDGE_PROXY_BIN`, or the workspace's debug build.
pub fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("EDGE_PROXY_BIN") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/edge-proxy");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p edge-proxy` first (cargo xtask test does)",
        path.display()
    );
    path
}

pub struct Proxy {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    /// Run under this open-files limit (soft and hard), through `prlimit`.
    nofile: Option<u64>,
    /// Where it listens at first start.
    listen: String,
    /// The binary to run instead of [`binary()`] (the load generator starts
    /// a release build it was pointed at).
    bin: Option<PathBuf>,
    /// A program `bin` runs under, with its arguments (an arm64 binary
    /// under `qemu-aarch64 -L SYSROOT`).
    wrapper: Vec<String>,
    /// The TOML file passed with `--config`, so it can be rewritten before
    /// a restart.
    config_path: PathBuf,
    /// Extra environment for the process.
    env: Vec<(String, String)>,
    _tmp: Option<tempfile::TempDir>,
}

impl Proxy {
    /// Starts a proxy with a fresh data directory and extra flags/config.
    /// `config` is TOML written to a file passed with `--config`.
    pub fn start(config: &str) -> Proxy {
        Proxy::start_in(config, None)
    }

    /// Like [`Proxy::start`], listening on `listen` (say `0.0.0.0:0`).
    pub fn start_listening(config: &str, listen: &str) -> Proxy {
        let mut proxy = Proxy::start_in(config, None);
        proxy.kill9();
        proxy.addr.clear();
        proxy.listen = listen.to_string();
        proxy.spawn();
        proxy
    }

    /// Like [`Proxy::start`], under an open-files limit of `nofile` (the
    /// soft limit of a systemd service without `LimitNOFILE` is 1024).
    pub fn start_with_nofile(config: &str, nofile: u64) -> Proxy {
        let mut proxy = Proxy::start_in(config, None);
        proxy.kill9();
        proxy.addr.clear();
        proxy.nofile = Some(nofile);
        proxy.spawn();
        proxy
    }

    /// Like [`Proxy::start`], with the machine's wall clock `offset` off
    /// for this process only (libfaketime, e.g. `"+10s"`; the monotonic
    /// clock stays true): a proxy on a box whose clock is wrong. `None`
    /// when Debian's `faketime` is not installed.
    pub fn start_with_clock_offset(config: &str, offset: &str) -> Option<Proxy> {
        let lib = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
            .iter()
            .map(|dir| Path::new(dir).join("faketime/libfaketime.so.1"))
            .find(|lib| lib.exists())?;
        let mut proxy = Proxy::start_in(config, None);
        proxy.kill9();
        proxy.addr.clear();
        proxy.env = vec![
            ("LD_PRELOAD".into(), lib.display().to_string()),
            ("FAKETIME".into(), offset.into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ];
        proxy.spawn();
        Some(proxy)
    }

    /// Like [`Proxy::start`], with the log in `data_dir` (e.g. on a small
    /// filesystem) instead of a fresh temporary directory.
    pub fn start_in(config: &str, data_dir: Option<PathBuf>) -> Proxy {
        Proxy::start_full(config, data_dir, None)
    }

    /// Like [`Proxy::start`], running `bin` instead of [`binary()`]: the
    /// load generator measures the release build it is given, not whatever
    /// `EDGE_PROXY_BIN` or the debug build happens to be.
    pub fn start_with_binary(bin: &Path, config: &str) -> Proxy {
        Proxy::start_full(config, None, Some(bin.to_path_buf()))
    }

    /// Like [`Proxy::start_with_binary`], `bin` run by `wrapper` (a program
    /// and its arguments, say `qemu-aarch64 -L /usr/aarch64-linux-gnu`).
    pub fn start_under(wrapper: &[String], bin: &Path, config: &str) -> Proxy {
        Proxy::start_wrapped(config, None, Some(bin.to_path_buf()), wrapper.to_vec())
    }

    fn start_full(config: &str, data_dir: Option<PathBuf>, bin: Option<PathBuf>) -> Proxy {
        Proxy::start_wrapped(config, data_dir, bin, Vec::new())
    }

    fn start_wrapped(
        config: &str,
        data_dir: Option<PathBuf>,
        bin: Option<PathBuf>,
        wrapper: Vec<String>,
    ) -> Proxy {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = data_dir.unwrap_or_else(|| tmp.path().join("data"));
        let config_path = tmp.path().join("proxy.toml");
        std::fs::write(&config_path, config).expect("write config");
        let args = vec!["--config".to_string(), config_path.display().to_string()];
        let mut proxy = Proxy {
            child: None,
            addr: String::new(),
            data_dir,
            args,
            nofile: None,
            listen: "127.0.0.1:0".into(),
            bin,
            wrapper,
            config_path,
            env: Vec::new(),
            _tmp: Some(tmp),
        };
        proxy.spawn();
        proxy
    }

    fn spawn(&mut self) {
        let port_file = self.data_dir.with_extension("port");
        let _ = std::fs::remove_file(&port_file);
        let bin = self.bin.clone().unwrap_or_else(binary);
        let mut command = match (self.nofile, self.wrapper.split_first()) {
            (Some(n), _) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
                c
            }
            (None, Some((program, args))) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            (None, None) => Command::new(bin),
        };
        let child = command
            .args(&self.args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(if self.addr.is_empty() {
                &self.listen
            } else {
                &self.addr
            })
            .arg("--port-file")
            .arg(&port_file)
            .env(
                "EDGE_PROXY_LOG",
                std::env::var("EDGE_PROXY_LOG").unwrap_or_else(|_| "error".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .expect("start edge-proxy");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&port_file) {
                if !addr.is_empty() {
                    self.addr = addr;
                    return;
                }
            }
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!("edge-proxy exited at start-up with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "edge-proxy did not start within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same port and data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Wipes the data directory (the log's history is lost: a new epoch).
    pub fn wipe(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }

    /// Plain HTTP GET over a raw socket (keeps the harness dependency-free).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path, &[])
    }

    /// Like [`Proxy::get`], with a failure to connect or write as an error
    /// instead of a panic: for callers that are not tests (the load
    /// generator) and must say what went wrong.
    pub fn try_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        try_http_get(&self.addr, path, &[])
    }

    /// The running process's id (for its CPU time and RSS in /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Replaces the config file; it takes effect at the next
    /// [`Proxy::restart`]. (Reading a whole long log back after a run needs
    /// a larger `max_behind` than the run itself should have.)
    pub fn rewrite_config(&self, config: &str) -> std::io::Result<()> {
        std::fs::write(&self.config_path, config)
    }

    /// One quantile of a summary in `/metrics`, e.g.
    /// `metric_quantile("proxy_log_commit_seconds", "0.99")`; `None` when
    /// the proxy cannot be reached or does not export it (yet).
    pub fn metric_quantile(&self, name: &str, quantile: &str) -> Option<f64> {
        let (status, body) = self.try_get("/metrics").ok()?;
        if status != 200 {
            return None;
        }
        let key = format!("{name}{{quantile=\"{quantile}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let request = request_text(addr, path, headers);
    stream.write_all(request.as_bytes()).expect("write");
    read_response(&mut stream)
}

/// [`http_get`] with a failure to connect or write returned, not a panic.
pub fn try_http_get(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    stream.write_all(request_text(addr, path, headers).as_bytes())?;
    Ok(read_response(&mut stream))
}

fn request_text(addr: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        request.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request
}

fn read_response(stream: &mut std::net::TcpStream) -> (u16, String) {
    use std::io::Read;
    // Read to EOF, except for a 101 (the socket stays open): stop at the headers.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
        if raw.starts_with(b"HTTP/1.1 101") && raw.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let response = String::from_utf8_lossy(&raw).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}
