//! Just enough WebDriver to drive headless Chromium from a test: ChromeDriver speaks HTTP
//! and JSON on localhost, so a `TcpStream` and serde_json suffice (no HTTP crate).
//!
//! The browser is Debian's `chromium` with `chromium-driver`, installed by
//! `scripts/install-browser` (scripts/test runs it); the tests never install anything.
//! Without them a test fails with that advice, unless `P2PDMA_SKIP_BROWSER=1`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The W3C key under which an element reference travels.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The flags this machine's closed network needs (no background connections at all).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1440,1000",
];

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Chromium and ChromeDriver, or why not. `None` means: skip (P2PDMA_SKIP_BROWSER=1).
pub fn browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_program("P2PDMA_CHROMIUM", &["chromium", "chromium-browser"]);
    let driver = find_program("P2PDMA_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ if std::env::var("P2PDMA_SKIP_BROWSER").as_deref() == Ok("1") => {
            eprintln!("P2PDMA_SKIP_BROWSER=1: skipping the browser test (no chromium/chromedriver)");
            None
        }
        (c, d) => {
            let missing: Vec<&str> = [(c.is_none(), "chromium"), (d.is_none(), "chromedriver")]
                .into_iter()
                .filter_map(|(gone, name)| gone.then_some(name))
                .collect();
            panic!(
                "the report's browser tests need headless Chromium and ChromeDriver ({} not found): run \
                 scripts/install-browser (Debian packages chromium and chromium-driver), or set \
                 P2PDMA_SKIP_BROWSER=1 to skip these tests",
                missing.join(" and ")
            )
        }
    }
}

/// One HTTP/1.1 exchange with `Connection: close`; returns status and body.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line)?;
    let status: u16 = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (mut length, mut chunked) = (None, false);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut out = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            out.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        out.resize(n, 0);
        r.read_exact(&mut out)?;
    } else {
        r.read_to_end(&mut out)?;
    }
    Ok((status, out))
}

/// A ChromeDriver process with one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free port and a headless Chromium with a fresh profile.
    pub fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser { driver, port, session: String::new(), _profile: profile };
        let t0 = Instant::now();
        while !matches!(http(port, "GET", "/status", None), Ok((200, _))) {
            assert!(t0.elapsed() < Duration::from_secs(30), "chromedriver did not come up on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", b._profile.path().display()));
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
            "goog:loggingPrefs": { "performance": "ALL", "browser": "ALL" },
        }}});
        let v = b.call("POST", "/session", Some(&caps));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        // Leave the start page, whose own resources would otherwise fill the logs.
        b.goto("about:blank");
        b
    }

    /// A WebDriver command; panics with the driver's message on error.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, bytes) = http(self.port, method, path, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let v: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        assert!(status == 200, "{method} {path}: HTTP {status}: {}", v["value"]);
        v["value"].clone()
    }

    fn at(&self, what: &str) -> String {
        format!("/session/{}/{what}", self.session)
    }

    /// A DevTools protocol command, through ChromeDriver.
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call("POST", &self.at("goog/cdp/execute"), Some(&json!({ "cmd": cmd, "params": params })))
    }

    /// Navigates and waits for the load event.
    pub fn goto(&self, url: &str) {
        self.call("POST", &self.at("url"), Some(&json!({ "url": url })));
    }

    /// Runs a script (`return ...`) in the page.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.call("POST", &self.at("execute/sync"), Some(&json!({ "script": script, "args": args })))
    }

    /// Runs an asynchronous script; it reports by calling `arguments[arguments.length - 1]`.
    pub fn js_async(&self, script: &str, args: Value) -> Value {
        self.call("POST", &self.at("execute/async"), Some(&json!({ "script": script, "args": args })))
    }

    /// The element a CSS selector finds first.
    pub fn find(&self, css: &str) -> String {
        let v = self.call("POST", &self.at("element"), Some(&json!({ "using": "css selector", "value": css })));
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element id for {css}: {v}")).to_string()
    }

    /// A real click (the driver scrolls the element into view and clicks its centre).
    pub fn click(&self, element: &str) {
        self.call("POST", &self.at(&format!("element/{element}/click")), Some(&json!({})));
    }

    /// Types keys into an element (WebDriver key codes, e.g. `\u{e014}` for the right arrow).
    pub fn keys(&self, element: &str, text: &str) {
        self.call("POST", &self.at(&format!("element/{element}/value")), Some(&json!({ "text": text })));
    }

    /// The entries of a log (`performance`, `browser`) since it was last read.
    pub fn log(&self, kind: &str) -> Vec<Value> {
        self.call("POST", &self.at("se/log"), Some(&json!({ "type": kind }))).as_array().cloned().unwrap_or_default()
    }

    /// URLs requested on behalf of the document at `page` (the page itself included), from
    /// the DevTools performance log since it was last read.
    pub fn requested_urls(&self, page: &str) -> Vec<String> {
        self.log("performance")
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e["message"].as_str()?).ok())
            .map(|m| m["message"].clone())
            .filter(|m| m["method"] == "Network.requestWillBeSent")
            .filter(|m| m["params"]["documentURL"].as_str().is_some_and(|d| d.split('#').next() == Some(page)))
            .filter_map(|m| m["params"]["request"]["url"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(self.port, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
