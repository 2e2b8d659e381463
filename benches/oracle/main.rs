//! `cargo bench --bench oracle`: the close-semantics scenarios (client FIN,
//! upstream FIN, RST each way, upstream refused, upstream blackholed, idle) run
//! through tcpbridge (`--reset-policy mirror` and `fin`), HAProxy `mode tcp` and
//! nginx `stream` (`proxy_half_close` off and on) when installed, all with connect timeout 1 s and idle timeout
//! 2 s, recording what each proxy's peers observed.
//!
//! ```text
//! cargo bench --bench oracle -- [--out DIR]
//! ```
//!
//! Writes `oracle.md` (a markdown table, scenario rows by proxy columns) to `DIR`
//! (default `<target>/bench-oracle/`) and prints it. It reports; it asserts
//! nothing. tcpbridge itself: `TCPBRIDGE_BIN` when set, otherwise `tcpbridge` in
//! the profile directory above this executable, as for the `compare` bench.

#[path = "../common/child.rs"]
mod child;
mod scenarios;
mod targets;

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process;

use scenarios::{Scenario, Upstream};
use targets::Target;

fn main() {
    let mut out = None;
    let mut args = env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--out" => out = args.next().map(PathBuf::from),
            other => {
                eprintln!("error: unknown argument {other:?}\nusage: cargo bench --bench oracle -- [--out DIR]");
                process::exit(2);
            }
        }
    }
    if let Err(e) = run(out) {
        eprintln!("error: {e}");
        process::exit(1);
    }
}

fn run(out: Option<PathBuf>) -> Result<(), String> {
    let exe = env::current_exe().map_err(|e| e.to_string())?;
    let target_dir = child::target_dir(&exe)?;
    let out = out.unwrap_or_else(|| target_dir.join("bench-oracle"));
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let tcpbridge = child::tcpbridge_binary(&exe);
    let scratch = env::temp_dir().join(format!("tcpbridge-oracle-{}", process::id()));

    let mut columns = Vec::new();
    let mut notes = Vec::new();
    for target in Target::ALL {
        match target.available(&tcpbridge) {
            Ok(()) => columns.push(target),
            Err(why) => notes.push(format!("{}: skipped ({why})", target.name())),
        }
    }
    // cells[scenario][column]
    let mut cells: Vec<Vec<String>> = Vec::new();
    for scenario in Scenario::ALL {
        let mut row = Vec::new();
        for &target in &columns {
            let dir = scratch.join(format!("{target:?}-{scenario:?}"));
            fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let cell = match run_one(scenario, target, &tcpbridge, &dir) {
                Ok((client, upstream)) => {
                    format!(
                        "client: {}<br>upstream: {}",
                        client.render(),
                        upstream.render()
                    )
                }
                Err(e) => format!("failed: {e}"),
            };
            eprintln!(
                "oracle: {:<24} {:<20} {}",
                scenario.describe().0,
                target.name(),
                cell
            );
            row.push(cell);
        }
        cells.push(row);
    }
    let _ = fs::remove_dir_all(&scratch);

    let mut text = String::from("| scenario |");
    for target in &columns {
        let _ = write!(text, " {} |", target.name());
    }
    text.push_str("\n|---|");
    text.push_str(&"---|".repeat(columns.len()));
    text.push('\n');
    for (scenario, row) in Scenario::ALL.iter().zip(&cells) {
        let _ = write!(text, "| **{}** |", scenario.describe().0);
        for cell in row {
            let _ = write!(text, " {cell} |");
        }
        text.push('\n');
    }
    text.push_str("\nScenarios (t=0 is the moment each time is counted from):\n\n");
    for scenario in Scenario::ALL {
        let (name, what) = scenario.describe();
        let _ = writeln!(text, "- **{name}**: {what}.");
    }
    for note in notes {
        let _ = writeln!(text, "- {note}");
    }
    fs::write(out.join("oracle.md"), &text).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

fn run_one(
    scenario: Scenario,
    target: Target,
    tcpbridge: &Path,
    dir: &Path,
) -> Result<(scenarios::Seen, scenarios::Seen), String> {
    let upstream = Upstream::new(scenario)?;
    let proxy = targets::start(target, upstream.addr(), tcpbridge, dir)?;
    scenarios::run(scenario, proxy.addr, &upstream)
}
