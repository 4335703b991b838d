//! Writes a generated HGX-style server (`p2pdma_core::synthetic`) as a topology file to
//! standard output, for scripts/bench-scale and by hand.
//!
//! Run: `cargo run -p p2pdma-core --example gen_server -- --functions 10000 [--flip-acs 0]`
//! `--functions` 100, 1000, 3000 or 10000 gives the presets (10000: issue 24's acceptance
//! machine); any other number a server of about that many functions. `--flip-acs H` inverts
//! the ACS of host bridge H's GPU switch (the second file of a `diff`).

use std::io::Write;
use std::process::ExitCode;

use p2pdma_core::synthetic::{server, ServerShape};

fn usage(problem: &str) -> ExitCode {
    eprintln!("gen_server: {problem}\nusage: gen_server --functions N [--flip-acs H]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut functions = None;
    let mut flip = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().map(|v| v.replace(['_', ','], ""));
        match (arg.as_str(), value.as_deref().map(str::parse::<usize>)) {
            ("--functions", Some(Ok(n))) if n > 0 => functions = Some(n),
            ("--flip-acs", Some(Ok(h))) => match u16::try_from(h) {
                Ok(h) => flip = Some(h),
                Err(_) => return usage("--flip-acs: out of range"),
            },
            _ => return usage(&format!("bad argument `{arg}`")),
        }
    }
    let Some(functions) = functions else { return usage("--functions is required") };
    let shape = ServerShape { flip_acs: flip, ..ServerShape::preset(functions) };
    match std::io::stdout().lock().write_all(server(&shape).as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_server: {e}");
            ExitCode::FAILURE
        }
    }
}
