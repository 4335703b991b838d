//! `p2pdma report` in a real browser: headless Chromium, driven through ChromeDriver, loads
//! reports made from snapshots of the lab scenarios, of the real guest sysfs fixtures, and
//! of a generated 1,000-device machine. It checks the matrix size, every cell's text and
//! colour against `topo --json`, that clicking a cell lights up exactly the path that
//! `check --json` gives, that the page requests nothing and its policy blocks requests, and
//! the size and render time for 1,000 devices.
//!
//! Needs `chromium` and `chromium-driver` (scripts/install-browser); fails without them
//! unless P2PDMA_SKIP_BROWSER=1.

mod common;
mod webdriver;

use common::p2pdma;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use p2pdma_core::synthetic::{server, ServerShape};
use serde_json::{json, Value};
use webdriver::Browser;

fn json_of(args: &[&str]) -> Value {
    let (_, out, err) = p2pdma(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("p2pdma {args:?}: {e}: {err}"))
}

/// `p2pdma snapshot SOURCE... -o DIR/NAME.json`, then `report --snapshot` of it.
fn snapshot_and_report(dir: &Path, name: &str, source: &[&str]) -> (PathBuf, PathBuf) {
    let snap = dir.join(format!("{name}.json"));
    let html = dir.join(format!("{name}.html"));
    let mut args = vec!["snapshot"];
    args.extend_from_slice(source);
    args.extend_from_slice(&["-o", snap.to_str().unwrap()]);
    let (code, _, err) = p2pdma(&args);
    assert_eq!(code, 0, "snapshot of {name}: {err}");
    let (code, _, err) = p2pdma(&["report", "--snapshot", snap.to_str().unwrap(), "-o", html.to_str().unwrap()]);
    assert_eq!(code, 0, "report of {name}: {err}");
    (snap, html)
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.canonicalize().unwrap().display())
}

/// Everything about the matrix the page shows, in one round trip. The matrix is drawn in
/// windows: `size` is the whole (ARIA row and column counts), `cells` what is drawn.
const INSPECT: &str = r#"
const t = document.getElementById('matrix');
const colour = (e) => getComputedStyle(e).backgroundColor;
const at = (e) => parseInt(e.getAttribute('aria-colindex'), 10) - 2;
const legend = {};
document.querySelectorAll('#legend .sw').forEach((s) => { legend[s.classList[1]] = colour(s); });
const rows = t ? Array.from(t.querySelectorAll('tbody tr[aria-rowindex]')) : [];
return {
  ready: document.documentElement.getAttribute('data-ready'),
  resources: performance.getEntriesByType('resource').length,
  csp: (document.querySelector('meta[http-equiv="Content-Security-Policy"]') || {}).content || null,
  empty: !!document.getElementById('no-matrix'),
  size: t ? [t.getAttribute('aria-rowcount') - 1, t.getAttribute('aria-colcount') - 1] : [0, 0],
  header: t ? Array.from(t.tHead.querySelectorAll('th[aria-colindex]')).slice(1).map((c) => [at(c), c.textContent]) : [],
  rows: rows.map((r) => [r.getAttribute('aria-rowindex') - 2, r.cells[0].textContent]),
  cells: rows.flatMap((r) => Array.from(r.querySelectorAll('td[aria-colindex]')).map((c) => ({
    pi: r.getAttribute('aria-rowindex') - 2, ci: at(c), text: c.textContent, cls: c.className, bg: colour(c),
  }))),
  legend,
};
"#;

/// What the page shows once a cell is selected.
const SELECTION: &str = r#"
const d = document.getElementById('details');
return {
  verdict: (document.getElementById('verdict') || {}).textContent || null,
  path: Array.from(d.querySelectorAll('ol.path li')).map((l) => l.getAttribute('data-node')),
  lit: Array.from(document.querySelectorAll('#tree g.node.on')).map((n) => n.id),
  edges: document.querySelectorAll('#tree .edge.on').length,
  dimmed: document.getElementById('tree').classList.contains('dim'),
  why: Array.from(d.querySelectorAll('ul.why li')).map((l) => l.textContent),
  fixes: Array.from(d.querySelectorAll('ul.fix li')).map((l) => l.textContent),
  selected: document.querySelectorAll('#matrix td.sel').length,
  redirect: Array.from(document.querySelectorAll('#tree g.node.redirect')).map((n) => n.id),
};
"#;

/// The path-class layer after the toggle: every drawn cell's text and colour, and the
/// colours of the path legend's swatches; the toggle is set back afterwards.
const PATH_LAYER: &str = r#"
const t = document.getElementById('matrix');
const colour = (e) => getComputedStyle(e).backgroundColor;
const pick = (v) => { const i = document.querySelector('#layers input[value="' + v + '"]'); i.click(); };
pick('path');
const legend = {};
document.querySelectorAll('#legend-path .sw').forEach((s) => { legend[s.classList[1]] = colour(s); });
const cells = Array.from(t.querySelectorAll('tbody tr[aria-rowindex]')).flatMap((r) =>
  Array.from(r.querySelectorAll('td[aria-colindex]')).map((c) => ({
    pi: r.getAttribute('aria-rowindex') - 2, ci: parseInt(c.getAttribute('aria-colindex'), 10) - 2,
    text: c.textContent, bg: colour(c) })));
const shown = { path: !document.getElementById('legend-path').hidden, verdict: !document.getElementById('legend').hidden };
pick('verdict');
return { cells, legend, shown, back: document.getElementById('legend-path').hidden };
"#;

/// BUS4 / HB4 / NO / SELF and the CSS class that colours it.
fn expected_cell(cell: &Value, same: bool) -> (String, &'static str) {
    match (cell["map_type"].as_str(), cell["distance"].as_u64()) {
        _ if same => ("SELF".into(), "m-s"),
        (Some("bus_addr"), Some(d)) => (format!("BUS{d}"), "m-b"),
        (Some("thru_host_bridge"), Some(d)) => (format!("HB{d}"), "m-h"),
        _ => ("NO".into(), "m-n"),
    }
}

/// Loads one report and checks it against the CLI's JSON; returns what it saw.
fn check_report(b: &Browser, html: &Path, snap: &Path) -> Value {
    let topo = json_of(&["topo", "--json", "--snapshot", snap.to_str().unwrap()]);
    let url = file_url(html);
    b.log("performance");
    b.log("browser");
    b.goto(&url);
    let page = b.js(INSPECT, json!([]));
    assert_eq!(page["ready"], "1", "{}: the script ran", html.display());
    let csp = page["csp"].as_str().unwrap_or_default();
    assert!(csp.starts_with("default-src 'none'") && !csp.contains("http"), "{csp}");

    // The matrix: size, and every cell's text and colour as the CLI's JSON says.
    let m = &topo["matrix"];
    let (providers, clients) = (m["providers"].as_array().unwrap(), m["clients"].as_array().unwrap());
    // Without providers there is no matrix, only the note that says so.
    let size = if providers.is_empty() { json!([0, 0]) } else { json!([providers.len(), clients.len()]) };
    assert_eq!(page["size"], size, "{}: matrix size", html.display());
    assert_eq!(page["empty"], providers.is_empty());
    let cells = page["cells"].as_array().unwrap();
    assert_eq!(cells.len(), providers.len() * clients.len(), "{}: a small matrix is drawn whole", html.display());
    let devices = topo["devices"].as_array().unwrap();
    let index_of = |bdf: &str| devices.iter().position(|d| d["bdf"] == bdf).unwrap();
    let hosts: Vec<&str> =
        topo["host_bridges"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    for cell in cells {
        let (pi, ci) = (cell["pi"].as_u64().unwrap() as usize, cell["ci"].as_u64().unwrap() as usize);
        let (text, class) = expected_cell(&m["cells"][pi][ci], providers[pi] == clients[ci]);
        assert_eq!(cell["text"].as_str().unwrap().trim_end_matches('?'), text, "{} [{pi}][{ci}]", html.display());
        assert!(cell["cls"].as_str().unwrap().split(' ').any(|c| c == class), "{cell}");
        assert_eq!(cell["bg"], page["legend"][class], "{}: colour of [{pi}][{ci}] is the legend's", html.display());
    }

    // The path-class layer: every cell as `topo --json`'s pairs say, coloured as its legend.
    if !providers.is_empty() {
        let layer = b.js(PATH_LAYER, json!([]));
        assert_eq!(layer["shown"], json!({ "path": true, "verdict": false }), "the legends swap");
        assert_eq!(layer["back"], true, "the toggle goes back to the verdicts");
        let pairs = topo["pairs"].as_array().unwrap();
        let shown = layer["cells"].as_array().unwrap();
        assert_eq!(shown.len(), pairs.len(), "{}: every cell in the path layer", html.display());
        for cell in shown {
            let (pi, ci) = (cell["pi"].as_u64().unwrap() as usize, cell["ci"].as_u64().unwrap() as usize);
            let want = &pairs[pi * clients.len() + ci];
            assert_eq!((&want["provider"], &want["client"]), (&providers[pi], &clients[ci]));
            let class = want["path_class"].as_str().unwrap();
            assert_eq!(cell["text"], class, "{}: path class of [{pi}][{ci}]", html.display());
            assert_eq!(cell["bg"], layer["legend"][format!("pc-{class}")], "colour of {class}");
        }
    }

    // Clicking a cell: its path (as `check --json` gives it) lights up, nothing else.
    for (pi, p) in providers.iter().enumerate() {
        for (ci, c) in clients.iter().enumerate() {
            click_cell(b, pi, ci);
            let sel = b.js(SELECTION, json!([]));
            let check = json_of(&[
                "check",
                "--json",
                "--snapshot",
                snap.to_str().unwrap(),
                p.as_str().unwrap(),
                c.as_str().unwrap(),
            ]);
            let v = &check["clients"][0];
            let path: Vec<&str> = v["path"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
            let shown: Vec<&str> = sel["path"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
            assert_eq!(shown, path, "{}: path of [{pi}][{ci}]", html.display());
            let want: HashSet<String> = path
                .iter()
                .map(|n| match hosts.iter().position(|h| h == n) {
                    Some(h) => format!("h{h}"),
                    None => format!("n{}", index_of(n)),
                })
                .collect();
            let lit: HashSet<String> =
                sel["lit"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().into()).collect();
            assert_eq!(lit, want, "{}: highlighted nodes of [{pi}][{ci}]", html.display());
            let hb_hops = path.windows(2).filter(|w| hosts.contains(&w[0]) && hosts.contains(&w[1])).count();
            assert_eq!(sel["edges"].as_u64().unwrap() as usize, path.len() - 1 - hb_hops, "connectors on the path");
            assert!(sel["dimmed"].as_bool().unwrap() && sel["selected"] == 1);
            let why: Vec<&str> = sel["why"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
            let reasons: Vec<&str> = v["reasons"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
            assert_eq!(why, reasons, "{}: reasons of [{pi}][{ci}]", html.display());
            assert_eq!(sel["fixes"].as_array().unwrap().len(), v["fixes"].as_array().unwrap().len());
            let redirect: HashSet<String> = v["acs_redirect"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| format!("n{}", index_of(r["device"].as_str().unwrap())))
                .collect();
            let shown: HashSet<String> =
                sel["redirect"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().into()).collect();
            assert_eq!(shown, redirect, "ACS redirect marks");
        }
    }

    // Nothing left the page: the only request is the page itself; no errors logged.
    let requested = b.requested_urls(&url);
    assert!(requested.iter().all(|u| u.split('#').next() == Some(url.as_str())), "requests: {requested:?}");
    assert!(!requested.is_empty(), "the performance log saw the page itself");
    assert_eq!(b.js(INSPECT, json!([]))["resources"], 0);
    let severe: Vec<Value> = b.log("browser").into_iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(severe.is_empty(), "{}: browser errors: {severe:?}", html.display());
    page
}

/// Clicks a cell as a user would, once it is scrolled to the middle of the matrix's box
/// (at an edge, the sticky row and column headers would take the click).
fn click_cell(b: &Browser, pi: usize, ci: usize) {
    b.js_async(
        r#"const done = arguments[arguments.length - 1];
        const e = document.querySelector(arguments[0]);
        if (e) e.scrollIntoView({ block: 'center', inline: 'center' });
        requestAnimationFrame(() => requestAnimationFrame(() => done(null)));"#,
        json!([cell_css(pi, ci)]),
    );
    b.click(&b.find(&cell_css(pi, ci)));
}

/// The drawn cell of provider row `pi` and client column `ci`.
fn cell_css(pi: usize, ci: usize) -> String {
    format!("#matrix tr[aria-rowindex=\"{}\"] td[aria-colindex=\"{}\"]", pi + 2, ci + 2)
}

/// Selects one cell by provider and client name and returns the selection.
fn select(b: &Browser, page: &Value, provider: &str, client: &str) -> Value {
    let find = |list: &Value, name: &str| {
        list.as_array().unwrap().iter().find(|e| e[1] == name).map(|e| e[0].as_u64().unwrap() as usize).unwrap()
    };
    let (pi, ci) = (find(&page["rows"], provider), find(&page["header"], client));
    click_cell(b, pi, ci);
    let mut sel = b.js(SELECTION, json!([]));
    sel["cell"] = page["cells"].as_array().unwrap().iter().find(|c| c["pi"] == pi && c["ci"] == ci).unwrap().clone();
    sel
}

const BUS: &str = "rgb(220, 252, 231)";
const HOST_BRIDGE: &str = "rgb(254, 243, 199)";
const REFUSED: &str = "rgb(254, 226, 226)";

#[test]
fn report_in_chromium_scenarios_and_fixtures_show_verdicts_paths_and_request_nothing() {
    let Some((chromium, driver)) = webdriver::browser() else { return };
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let b = Browser::start(&chromium, &driver);
    let mut scenarios: Vec<String> = std::fs::read_dir("../../examples/topologies")
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    scenarios.sort();
    assert!(scenarios.len() >= common::MIN_SCENARIOS, "{scenarios:?}");
    for name in &scenarios {
        let spec = format!("examples/topologies/{name}.toml");
        let (snap, html) = snapshot_and_report(dir.path(), name, &["--spec", &spec]);
        let page = check_report(&b, &html, &snap);
        // Known verdicts, by colour and text.
        match name.as_str() {
            "switch" => {
                let s = select(&b, &page, "nvme-a", "nvme-b");
                assert_eq!((s["cell"]["text"].as_str(), s["cell"]["bg"].as_str()), (Some("BUS4"), Some(BUS)));
                assert_eq!(s["verdict"], "bus address · distance 4");
                assert_eq!(s["path"].as_array().unwrap().len(), 5);
            }
            "root-ports" => {
                let s = select(&b, &page, "nvme-a", "nvme-b");
                assert_eq!((s["cell"]["text"].as_str(), s["cell"]["bg"].as_str()), (Some("NO"), Some(REFUSED)));
                assert_eq!(s["verdict"], "not supported");
                assert!(s["lit"].as_array().unwrap().contains(&json!("h0")), "through the host bridge");
            }
            "zen-root-ports" => {
                let s = select(&b, &page, "nvme-a", "nvme-b");
                assert_eq!((s["cell"]["text"].as_str(), s["cell"]["bg"].as_str()), (Some("HB4"), Some(HOST_BRIDGE)));
                assert_eq!(s["verdict"], "through the host bridge · distance 4");
            }
            "iommu-acs" => {
                let s = select(&b, &page, "nvme-a", "nvme-b");
                assert_eq!(s["cell"]["text"], "NO");
                assert_eq!(s["redirect"].as_array().unwrap().len(), 1, "the root port redirects");
                assert!(s["fixes"][0].as_str().unwrap().contains("pci=disable_acs_redir=0000:00:11.0"));
            }
            "nested-switches" => {
                let s = select(&b, &page, "nvme-far", "nvme-c");
                assert_eq!((s["cell"]["text"].as_str(), s["cell"]["bg"].as_str()), (Some("BUS6"), Some(BUS)));
                // The arrow keys move the selection: up to nvme-near × nvme-c.
                b.keys(&b.find("#matrix-scroll"), "\u{e013}");
                let s = b.js(SELECTION, json!([]));
                assert_eq!(
                    (s["verdict"].as_str(), s["selected"].as_u64()),
                    (Some("bus address · distance 4"), Some(1))
                );
                assert_eq!(s["path"].as_array().unwrap().first().unwrap(), "0000:06:00.0", "from nvme-near");
            }
            // No P2P memory, but both NVMe have a registers BAR: the verdict a BAR would get.
            "no-provider" => assert_eq!((page["empty"].as_bool(), &page["size"]), (Some(false), &json!([2, 2]))),
            "capture-box" => {
                let s = select(&b, &page, "gpu0", "nic0");
                assert_eq!((s["cell"]["text"].as_str(), s["cell"]["bg"].as_str()), (Some("HB4"), Some(HOST_BRIDGE)));
                let layer = b.js(PATH_LAYER, json!([]));
                let cell = layer["cells"].as_array().unwrap().iter().find(|c| c["pi"] == 0 && c["ci"] == 1).unwrap();
                assert_eq!(cell["text"], "PIX", "ACS sends it through the root complex, the wire is one switch");
            }
            _ => {}
        }
    }

    // The real guest's sysfs trees (degraded link, ACS, IOMMU groups as the kernel showed them).
    for fixture in ["switch", "multifunction-iommu"] {
        let root = format!("crates/p2pdma-lab/fixtures/{fixture}");
        let (sys, proc_) = (format!("{root}/sys"), format!("{root}/proc"));
        let name = format!("fixture-{fixture}");
        let (snap, html) = snapshot_and_report(dir.path(), &name, &["--sysfs-root", &sys, "--proc-root", &proc_]);
        let page = check_report(&b, &html, &snap);
        assert_eq!(page["size"][1], 5, "the DMA-capable endpoints");
        assert!(page["size"][0].as_u64().unwrap() > 1, "every endpoint with a memory BAR is a row");
        let badges = b.js(
            "return Array.from(document.querySelectorAll('#tree .b')).map((e) => e.getAttribute('class') + ': ' + e.textContent);",
            json!([]),
        );
        let badges: Vec<&str> = badges.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert!(badges.contains(&"b warn: 2.5GT/s x1 (max 16GT/s x32)"), "degraded root port link: {badges:?}");
        assert!(badges.iter().any(|b| b.starts_with("b mem: P2P memory 15.9 MiB free of 16.0 MiB")), "{badges:?}");
        if fixture == "multifunction-iommu" {
            assert!(
                badges.contains(&"b redir: ACS SV RR CR UF") && badges.contains(&"b grp: IOMMU group 4"),
                "{badges:?}"
            );
            let facts = b.js("return document.getElementById('facts').textContent;", json!([]));
            let facts = facts.as_str().unwrap();
            assert!(facts.contains("7.2.13+deb14-amd64") && facts.contains("intel_iommu=on"), "{facts}");
            // Clicking a device in the tree shows its facts: the root port's ACS control.
            let root_port = json_of(&["topo", "--json", "--snapshot", snap.to_str().unwrap()])["devices"]
                .as_array()
                .unwrap()
                .iter()
                .position(|d| d["bdf"] == "0000:00:11.0")
                .unwrap();
            b.click(&b.find(&format!("#n{root_port} rect.box")));
            let panel = b.js("return document.getElementById('details').textContent;", json!([]));
            assert!(panel.as_str().unwrap().contains("ctrl 0x001d at 0x148 (redirects peer traffic)"), "{panel}");
            let acs = "ACSCtl:SrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-";
            assert!(panel.as_str().unwrap().contains(acs), "ACS as lspci -vv prints it: {panel}");
        }
    }

    // The policy blocks what a page might try: a fetch and an image from elsewhere.
    let (_, html) = snapshot_and_report(dir.path(), "probe", &["--spec", "examples/topologies/switch.toml"]);
    // A link to a verdict: #pair= selects the cell when the page opens.
    b.goto(&format!("{}#pair=nvme-a,nvme-b", file_url(&html)));
    let sel = b.js(SELECTION, json!([]));
    assert_eq!((sel["verdict"].as_str(), sel["selected"].as_u64()), (Some("bus address · distance 4"), Some(1)));
    let blocked = b.js_async(
        r#"const done = arguments[arguments.length - 1];
        const seen = [];
        document.addEventListener('securitypolicyviolation', (e) => seen.push(e.effectiveDirective + ' ' + e.blockedURI));
        fetch('http://192.0.2.1/leak').catch(() => {});
        const img = new Image();
        img.src = 'http://192.0.2.1/leak.png';
        setTimeout(() => done(seen), 500);"#,
        json!([]),
    );
    let blocked: Vec<&str> = blocked.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(blocked.iter().any(|s| s.starts_with("connect-src http://192.0.2.1")), "{blocked:?}");
    assert!(blocked.iter().any(|s| s.starts_with("img-src http://192.0.2.1")), "{blocked:?}");
    eprintln!("browser test: {} scenarios and 2 fixtures in {:.1} s", scenarios.len(), t0.elapsed().as_secs_f64());
}

/// A machine of 1,014 PCI functions: six host bridges (half of them whitelisted), four
/// root ports each, a switch with eight ports below each (ACS on every other switch, the
/// IOMMU on), four functions (GPU, NIC, NVMe, other) per port; every fourth port's GPU has
/// 256 MiB of P2P memory; every endpoint has memory BARs: 768 × 768 cells.
fn thousand_devices() -> String {
    let mut t = String::from(
        "name = \"thousand\"\ndescription = \"generated: 6 host bridges, 24 switches, 768 endpoints, 48 providers\"\n\
         [machine]\ncpu = \"intel\"\niommu = true\n",
    );
    for h in 0..6 {
        let id = if h % 2 == 0 { "8086:2030" } else { "8086:29c0" };
        writeln!(t, "[[host_bridge]]\nname = \"hb{h}\"\ndomain = {h}\nbus = 0\nid = \"{id}\"").unwrap();
        for r in 0..4 {
            writeln!(t, "[[root_port]]\nname = \"rp{h}.{r}\"\nhost_bridge = \"hb{h}\"\nslot = {}", r + 1).unwrap();
            let acs = if r % 2 == 1 { "\nacs = true" } else { "" };
            writeln!(t, "[[switch]]\nname = \"s{h}.{r}\"\nparent = \"rp{h}.{r}\"\nports = 8{acs}").unwrap();
            for p in 0..8 {
                for (f, kind) in ["gpu", "nic", "nvme", "device"].iter().enumerate() {
                    let mem = if f == 0 && p % 4 == 0 { "\np2pmem_mib = 256" } else { "" };
                    writeln!(
                        t,
                        "[[endpoint]]\nname = \"d{h}.{r}.{p}.{f}\"\nkind = \"{kind}\"\nparent = \"s{h}.{r}.{p}\"\nfunction = {f}{mem}"
                    )
                    .unwrap();
                }
            }
        }
    }
    t
}

/// Three loads of a page, each measured from navigation start to the first frame after
/// the script (sorted), the last load's timings, and the renderer's main-thread time.
fn render_times(b: &Browser, url: &str) -> (Vec<f64>, Value, Vec<String>) {
    // Three loads; each measured from navigation start to the first frame after the script.
    let mut frames = Vec::new();
    let mut timings = Value::Null;
    let mut busy = Vec::new();
    for _ in 0..3 {
        b.goto("about:blank");
        b.cdp("Performance.enable", json!({}));
        b.goto(url);
        timings = b.js_async(
            r#"const done = arguments[arguments.length - 1];
            requestAnimationFrame(() => requestAnimationFrame(() => {
              const nav = performance.getEntriesByType('navigation')[0];
              const fcp = performance.getEntriesByName('first-contentful-paint')[0];
              const ready = performance.getEntriesByName('p2pdma-ready')[0];
              done({ frame: performance.now(), load: nav.loadEventEnd, dom: nav.domContentLoadedEventEnd,
                     fcp: fcp ? fcp.startTime : null, ready: ready ? ready.startTime : null });
            }));"#,
            json!([]),
        );
        frames.push(timings["frame"].as_f64().unwrap());
        // The renderer's main-thread time (DevTools metrics: parse, style, layout, script).
        let metrics = b.cdp("Performance.getMetrics", json!({}));
        let metric = |name: &str| {
            metrics["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).and_then(|m| m["value"].as_f64())
        };
        busy.push(format!(
            "task {:.0} ms (layout {:.0}, style {:.0}, script {:.0})",
            metric("TaskDuration").unwrap_or(0.0) * 1e3,
            metric("LayoutDuration").unwrap_or(0.0) * 1e3,
            metric("RecalcStyleDuration").unwrap_or(0.0) * 1e3,
            metric("ScriptDuration").unwrap_or(0.0) * 1e3
        ));
        b.cdp("Performance.disable", json!({}));
    }
    frames.sort_by(f64::total_cmp);
    (frames, timings, busy)
}

#[test]
fn report_in_chromium_thousand_devices_under_5_mb_and_renders_fast() {
    let Some((chromium, driver)) = webdriver::browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("thousand.toml");
    std::fs::write(&spec, thousand_devices()).unwrap();
    let t0 = Instant::now();
    let (snap, html) = snapshot_and_report(dir.path(), "thousand", &["--spec", spec.to_str().unwrap()]);
    let generate = t0.elapsed().as_secs_f64();
    let size = std::fs::metadata(&html).unwrap().len();
    let topo = json_of(&["topo", "--json", "--snapshot", snap.to_str().unwrap()]);
    assert_eq!(topo["devices"].as_array().unwrap().len(), 1014);
    assert!(size < 5_000_000, "the report of 1,014 devices is {size} bytes");

    let b = Browser::start(&chromium, &driver);
    let url = file_url(&html);
    let (frames, timings, busy) = render_times(&b, &url);
    eprintln!(
        "1,014 devices: report {size} bytes, generated in {generate:.2} s (debug build, snapshot included); \
         first frame after load {frames:?} ms; last load: {timings}; main thread: {busy:?}"
    );
    assert!(frames[1] < 2000.0, "median render {} ms (all: {frames:?})", frames[1]);

    // The whole matrix is addressable, only what is in view is drawn, and a click far into
    // it (after scrolling there) still lights its path up.
    let dims = b.js(
        "const t = document.getElementById('matrix'); return [+t.getAttribute('aria-rowcount') - 1, +t.getAttribute('aria-colcount') - 1, t.querySelectorAll('td[aria-colindex]').length];",
        json!([]),
    );
    assert_eq!((dims[0].as_u64(), dims[1].as_u64()), (Some(768), Some(768)));
    assert!(dims[2].as_u64().unwrap() < 5000, "drawn cells: {}", dims[2]);
    b.log("performance");
    b.js_async(
        r#"const done = arguments[arguments.length - 1];
        const box = document.getElementById('matrix-scroll');
        box.scrollLeft = 699 * 54 - 200;
        box.scrollTop = 39 * 26 - 100;
        requestAnimationFrame(() => requestAnimationFrame(() => done(null)));"#,
        json!([]),
    );
    b.click(&b.find(&cell_css(39, 699)));
    let sel = b.js(SELECTION, json!([]));
    let m = &topo["matrix"];
    let (p, c) = (m["providers"][39].as_str().unwrap(), m["clients"][699].as_str().unwrap());
    let check = json_of(&["check", "--json", "--snapshot", snap.to_str().unwrap(), p, c]);
    assert_eq!(sel["path"], check["clients"][0]["path"]);
    assert_eq!(sel["lit"].as_array().unwrap().len(), check["clients"][0]["path"].as_array().unwrap().len());
    assert_eq!(sel["selected"], 1);
    // The tree scrolled to the provider.
    let visible = b.js(
        r#"const s = document.getElementById('tree-scroll').getBoundingClientRect();
        const n = document.querySelector('#tree g.node.sel-p').getBoundingClientRect();
        return n.bottom > s.top && n.top < s.bottom;"#,
        json!([]),
    );
    assert_eq!(visible, true);
    assert!(b.requested_urls(&url).is_empty(), "a click requests nothing");
}

/// Issue 24's acceptance: the report of the generated 10,000-function server
/// (`synthetic::ServerShape::acceptance`: 4 sockets, 16 GPUs, 38 NICs and DPUs with 255 VFs)
/// draws in under 2 s; each NIC's VFs are one row and column, unfolded on a click, and a
/// member's cell explains that member's own pair, as `check --json` does.
#[test]
fn report_in_chromium_ten_thousand_functions_folds_vfs_and_renders_fast() {
    let Some((chromium, driver)) = webdriver::browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("hgx-10k.toml");
    let shape = ServerShape::acceptance();
    std::fs::write(&spec, server(&shape)).unwrap();
    let (spec, html) = (spec.to_str().unwrap(), dir.path().join("hgx-10k.html"));
    let t0 = Instant::now();
    let (code, _, err) = p2pdma(&["report", "--spec", spec, "-o", html.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("{} devices", shape.functions())), "{err}");
    let generate = t0.elapsed().as_secs_f64();
    let size = std::fs::metadata(&html).unwrap().len();
    assert!(size < 10_000_000, "the report of {} functions is {size} bytes", shape.functions());

    let b = Browser::start(&chromium, &driver);
    let url = file_url(&html);
    let (frames, timings, busy) = render_times(&b, &url);
    eprintln!(
        "{} functions: report {size} bytes, generated in {generate:.2} s (debug build); \
         first frame after load {frames:?} ms; last load: {timings}; main thread: {busy:?}",
        shape.functions()
    );
    assert!(frames[1] < 2000.0, "median render {} ms (all: {frames:?})", frames[1]);

    b.log("performance");
    // Rows and columns by their representative's name, from the page's data block.
    let page = std::fs::read_to_string(&html).unwrap();
    let open_tag = r#"<script type="application/json" id="p2pdma-data">"#;
    let start = page.find(open_tag).unwrap() + open_tag.len();
    let data: Value = serde_json::from_str(&page[start..start + page[start..].find("</script>").unwrap()]).unwrap();
    let m = &data["matrix"];
    let (rows, cols) = (m["providers"].as_array().unwrap().len(), m["clients"].as_array().unwrap().len());
    // Rows and columns are groups: each NIC's and DPU's 255 VFs one, the tree one card each.
    let shape = r#"const t = document.getElementById('matrix');
        return { rows: +t.getAttribute('aria-rowcount') - 1, cols: +t.getAttribute('aria-colcount') - 1,
                 drawn: t.querySelectorAll('td[aria-colindex]').length, cards: document.querySelectorAll('#tree g.node').length,
                 heads: Array.from(t.querySelectorAll('tbody th.grp')).map((h) => h.textContent) };"#;
    let folded = b.js(shape, json!([]));
    assert_eq!((folded["rows"].as_u64(), folded["cols"].as_u64()), (Some(rows as u64), Some(cols as u64)));
    assert!(rows < 200 && cols < 200, "{folded}");
    assert_eq!(m["counts"]["clients"].as_u64().unwrap() - cols as u64, 38 * 254, "38 groups of 255 VFs fold");
    assert!(folded["cards"].as_u64().unwrap() < 500, "{folded}");
    assert!(folded["heads"].as_array().unwrap().contains(&json!("nic0-vf0 +254 VFs")), "{folded}");

    // Unfolding nic0's VFs: 255 rows; a member's cell against another VF of the same NIC
    // and against a GPU explains exactly that pair, as `check --json` does.
    assert_eq!(folded["heads"][0], "nic0-vf0 +254 VFs", "the first folded row is nic0's VFs");
    b.click(&b.find("#matrix tbody th.grp"));
    let open = b.js(shape, json!([]));
    assert_eq!(open["rows"].as_u64(), Some(rows as u64 + 254), "{open}");
    let names = b.js(
        "return Array.from(document.querySelectorAll('#matrix tbody tr[aria-rowindex]')).map((r) => [+r.getAttribute('aria-rowindex') - 2, r.cells[0].textContent]);",
        json!([]),
    );
    let row_of =
        |name: &str| names.as_array().unwrap().iter().find(|r| r[1] == name).map(|r| r[0].as_u64().unwrap() as usize);
    let vf3 = row_of("nic0-vf3").expect("nic0-vf3 has its own row once unfolded");
    let col_of = |name: &str| {
        m["clients"]
            .as_array()
            .unwrap()
            .iter()
            .position(|i| data["devices"][i.as_u64().unwrap() as usize]["name"] == name)
    };
    // Across the ACS switch, within the VFs, to another socket, to another NIC's VFs.
    for (client, wanted) in [("gpu0", "gpu0"), ("nic0-vf0", "nic0-vf0"), ("gpu1", "gpu1"), ("nic5-vf0", "nic5-vf0")] {
        let ci = col_of(client).unwrap_or_else(|| panic!("{client} is a column"));
        // Windowed: scroll the column into the drawn part first.
        b.js_async(
            r#"const done = arguments[arguments.length - 1];
            document.getElementById('matrix-scroll').scrollLeft = Math.max(0, arguments[0] * 54 - 200);
            requestAnimationFrame(() => requestAnimationFrame(() => done(null)));"#,
            json!([ci]),
        );
        click_cell(&b, vf3, ci);
        let sel = b.js(SELECTION, json!([]));
        let check = json_of(&["check", "--json", "--spec", spec, "nic0-vf3", wanted]);
        let v = &check["clients"][0];
        let path: Vec<&str> = v["path"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        let shown: Vec<&str> = sel["path"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(shown, path, "nic0-vf3 -> {wanted}");
        let why: Vec<&str> = sel["why"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        let reasons: Vec<&str> = v["reasons"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(why, reasons, "nic0-vf3 -> {wanted}: the member's own addresses in the reasons");
        assert_eq!(sel["selected"], 1);
    }
    // Folding back.
    b.click(&b.find("#matrix tbody th.grp"));
    assert_eq!(b.js(shape, json!([]))["rows"].as_u64(), Some(rows as u64));
    assert!(b.requested_urls(&url).is_empty(), "clicks request nothing");
    let severe: Vec<Value> = b.log("browser").into_iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(severe.is_empty(), "browser errors: {severe:?}");
}
