//! `p2pdma report` and `topo --svg` as files: self-contained, escaped, the JSON contract
//! inside, exit codes. (tests/report_browser.rs loads the same pages in Chromium.)

mod common;

use common::{p2pdma, SWITCH};

use serde_json::Value;

/// The JSON data block of a report page.
fn data_block(html: &str) -> Value {
    let open = r#"<script type="application/json" id="p2pdma-data">"#;
    let start = html.find(open).expect("a data block") + open.len();
    let end = start + html[start..].find("</script>").expect("the data block ends");
    serde_json::from_str(&html[start..end]).expect("the data block is JSON")
}

#[test]
fn report_is_one_self_contained_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("switch.html");
    let (code, stdout, err) = p2pdma(&["report", "--spec", SWITCH, "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.is_empty() && err.contains("wrote") && err.contains("7 devices"), "{err}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Nothing to fetch: no src attributes, no stylesheet or script links, no CSS url(), and
    // the only `http` is the SVG namespace the script creates elements in.
    assert!(!html.contains(" src=") && !html.contains("url(") && !html.contains("@import"));
    assert_eq!(html.matches("<link").count(), 1);
    assert!(html.contains(r#"<link rel="icon" href="data:,">"#));
    assert!(html
        .match_indices("http")
        .all(|(i, _)| html[i..].starts_with("http-equiv") || html[i..].starts_with("http://www.w3.org/2000/svg")));
    let csp = html.split(r#"http-equiv="Content-Security-Policy" content=""#).nth(1).unwrap();
    assert!(csp.starts_with("default-src &#39;none&#39;; script-src &#39;sha256-"), "{csp}");
    assert_eq!(html.matches("<script").count(), 2, "the data block and the script");
    assert_eq!(html.matches("<style>").count(), 1);
}

#[test]
fn report_data_block_is_the_json_contract() {
    let (code, html, _) = p2pdma(&["report", "--spec", SWITCH, "-o", "-"]);
    assert_eq!(code, 0);
    let data = data_block(&html);
    let (_, topo, _) = p2pdma(&["topo", "--spec", SWITCH, "--json"]);
    let topo: Value = serde_json::from_str(&topo).unwrap();
    assert_eq!((data["schema"].as_str(), data["version"].as_u64()), (Some("p2pdma-report"), Some(2)));
    assert_eq!(data["title"], "switch");
    for key in ["machine", "cpu_allows_p2pdma", "host_bridges", "providers"] {
        assert_eq!(data[key], topo[key], "{key} as `topo --json` prints it");
    }
    assert_eq!(data["devices"], topo["devices"], "devices (spec topologies carry no raw config)");
    let m = &data["matrix"];
    let bdf = |i: &Value| data["devices"][i.as_u64().unwrap() as usize]["bdf"].clone();
    let providers: Vec<Value> = m["providers"].as_array().unwrap().iter().map(bdf).collect();
    let clients: Vec<Value> = m["clients"].as_array().unwrap().iter().map(bdf).collect();
    assert_eq!(Value::from(providers), topo["matrix"]["providers"]);
    assert_eq!(Value::from(clients), topo["matrix"]["clients"]);
    // nvme-a × nvme-b: bus address, distance 4, its reason text with the addresses restored.
    // Rows are run-length encoded: [verdict, count, ...].
    let runs: Vec<u64> = m["cells"][0].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    let row: Vec<u64> = runs.chunks(2).flat_map(|r| std::iter::repeat_n(r[0], r[1] as usize)).collect();
    let v = &m["verdicts"][row[1] as usize];
    assert_eq!((v["map_type"].as_str(), v["distance"].as_u64()), (Some("bus_addr"), Some(4)));
    let reason = m["texts"][v["reasons"][0].as_u64().unwrap() as usize].as_str().unwrap();
    assert!(reason.contains("distance 4"), "{reason}");
    assert_eq!(m["counts"]["bus_addr"], 2, "both directions: nvme-b has a registers BAR too");
}

#[test]
fn report_snapshot_drops_raw_config_space() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("s.json");
    let root = "crates/p2pdma-lab/fixtures/multifunction-iommu";
    let (code, _, err) = p2pdma(&[
        "snapshot",
        "--sysfs-root",
        &format!("{root}/sys"),
        "--proc-root",
        &format!("{root}/proc"),
        "-o",
        snap.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read_to_string(&snap).unwrap().contains("config_hex"));
    let (code, html, _) = p2pdma(&["report", "--snapshot", snap.to_str().unwrap(), "-o", "-"]);
    assert_eq!(code, 0);
    assert!(!html.contains("config_hex"));
    let data = data_block(&html);
    assert_eq!(data["machine"]["kernel_release"], "7.2.13+deb14-amd64");
    assert!(html.contains("ACS SV RR CR UF") && html.contains("(max 16GT/s x32)"), "ACS bits, degraded link");
}

#[test]
fn report_escapes_hostile_names() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("evil.toml");
    let evil = r#"</script><script>alert(1)</script><img src=x onerror=alert(2)>&"'"#;
    std::fs::write(
        &spec,
        format!(
            "name = \"evil\"\n[[root_port]]\nname = \"rp0\"\n[[endpoint]]\nname = {evil:?}\nkind = \"nvme\"\nparent = \"rp0\"\ncmb_mib = 16\n"
        ),
    )
    .unwrap();
    let (code, html, err) = p2pdma(&["report", "--spec", spec.to_str().unwrap(), "-o", "-"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(html.matches("<script").count(), 2, "no script injected");
    assert!(!html.contains("<img") && !html.contains("</script><script>alert"));
    assert!(html.contains("&lt;/script&gt;&lt;script&gt;alert(1)"), "shown, escaped");
    let data = data_block(&html);
    assert!(data["devices"].as_array().unwrap().iter().any(|d| d["name"] == evil), "the data keeps the name as is");
    let (code, svg, _) = p2pdma(&["topo", "--spec", spec.to_str().unwrap(), "--svg", "-"]);
    assert_eq!(code, 0);
    assert!(!svg.contains("<script") && !svg.contains("<img") && svg.contains("&lt;img src=x"));
}

#[test]
fn topo_svg_writes_a_standalone_picture() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tree.svg");
    let (code, stdout, err) =
        p2pdma(&["topo", "--spec", "examples/topologies/nested-switches.toml", "--svg", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.is_empty(), "the file instead of the text");
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg""#) && svg.ends_with("</svg>"));
    assert!(svg.contains("<style>") && svg.contains("p2pdma topology: nested-switches"));
    assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count(), "balanced groups");
    for name in ["nvme-near", "nvme-far", "nvme-c", "switch outer", "switch inner", "P2P memory 16.0 MiB free"] {
        assert!(svg.contains(name), "{name}");
    }
    // The same renderer as the report page.
    let (_, html, _) = p2pdma(&["report", "--spec", "examples/topologies/nested-switches.toml", "-o", "-"]);
    let body = |s: &str| s[s.find(r#"<g class="switches">"#).unwrap()..].split("</svg>").next().unwrap().to_string();
    assert_eq!(body(&svg), body(&html) + "</g>", "the standalone picture only wraps it in a caption");
}

#[test]
fn report_bad_output_and_input_exit_2_with_one_line() {
    let (code, _, err) = p2pdma(&["report", "--spec", SWITCH, "-o", "/nonexistent-dir/r.html"]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot write the report to /nonexistent-dir/r.html"), "{err}");
    let (code, _, err) = p2pdma(&["topo", "--spec", SWITCH, "--svg", "/nonexistent-dir/t.svg"]);
    assert_eq!((code, err.lines().count()), (2, 1), "{err}");
    let (code, _, _) = p2pdma(&["report", "--spec", "examples/topologies/missing.toml", "-o", "-"]);
    assert_eq!(code, 2);
    let (code, _, _) = p2pdma(&["report", "--spec", SWITCH]);
    assert_eq!(code, 2, "-o is required");
    let (code, _, _) = p2pdma(&["topo", "--spec", SWITCH, "--svg", "-", "--json"]);
    assert_eq!(code, 2, "--svg and --json conflict");
}

/// `report --kernel-params`: the page is the machine after a chosen fix, its matrix and its
/// IOMMU groups, and says it is a what-if.
#[test]
fn report_after_a_chosen_fix_shows_its_matrix_and_groups() {
    let spec = "examples/topologies/iommu-groups.toml";
    let fix = "pci=disable_acs_redir=0000:00:10.0";
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = (dir.path().join("before.html"), dir.path().join("after.html"));
    assert_eq!(p2pdma(&["report", "--spec", spec, "-o", before.to_str().unwrap()]).0, 0);
    assert_eq!(p2pdma(&["report", "--spec", spec, "--kernel-params", fix, "-o", after.to_str().unwrap()]).0, 0);
    let (before, after) = (std::fs::read_to_string(before).unwrap(), std::fs::read_to_string(after).unwrap());
    assert!(before.contains("<dt>IOMMU groups</dt><dd>7 groups, 3 shared<small>predicted from the kernel&#39;s rules"));
    assert!(
        after.contains(&format!("<dt>IOMMU groups</dt><dd>6 groups, 3 shared<small>WHAT-IF after {fix}")),
        "{after}"
    );
    assert!(after.contains("1: 0000:00:10.0 0000:01:00.0 0000:01:00.1"));
    let (b, a) = (data_block(&before), data_block(&after));
    assert_ne!(b["matrix"], a["matrix"], "the fix changes the matrix: nvme-a → nvme-b maps by bus address");
}

/// A PF's VFs that the kernel cannot tell apart are one row, one column and one card; the
/// counts still count every device and pair.
#[test]
fn report_folds_vfs_into_one_row_column_and_card() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("vfs.toml");
    std::fs::write(
        &spec,
        "[[root_port]]\nname = \"rp0\"\n[[switch]]\nname = \"sw0\"\nparent = \"rp0\"\n\
         [[endpoint]]\nname = \"nic0\"\nkind = \"nic\"\nparent = \"sw0.0\"\nvfs = 32\n\
         [[endpoint]]\nname = \"nvme0\"\nkind = \"nvme\"\nparent = \"sw0.1\"\ncmb_mib = 16\n",
    )
    .unwrap();
    let (code, html, err) = p2pdma(&["report", "--spec", spec.to_str().unwrap(), "-o", "-"]);
    assert_eq!(code, 0, "{err}");
    let data = data_block(&html);
    let m = &data["matrix"];
    // nic0, its 32 VFs as one group, nvme0: three rows and columns for 34 devices each.
    assert_eq!((m["providers"].as_array().unwrap().len(), m["clients"].as_array().unwrap().len()), (3, 3));
    assert_eq!((m["counts"]["providers"].as_u64(), m["counts"]["clients"].as_u64()), (Some(34), Some(34)));
    let c = &m["counts"];
    let pairs: u64 =
        ["bus_addr", "thru_host_bridge", "not_supported", "self"].iter().map(|k| c[k].as_u64().unwrap()).sum();
    assert_eq!(pairs, 34 * 34, "every device pair counted");
    let folded: Vec<&Value> = data["devices"].as_array().unwrap().iter().filter(|d| d.get("bars").is_none()).collect();
    assert_eq!(folded.len(), 31, "31 VFs folded into nic0-vf0's row: {folded:?}");
    assert!(folded.iter().all(|d| d["physfn"].is_string() && d["name"].as_str().unwrap().starts_with("nic0-vf")));
    assert!(html.contains("nic0-vf0 +31 VFs") && html.contains("32 VFs of "), "one card");
    assert!(!html.contains(">nic0-vf1<"), "no card of a folded VF");
}
