//! The command line the sectioned benches share (`upstreams`, `tunnels`):
//! `[--quick] [--out DIR] [--runs N] [--only a,b,...]`, with `--bench` (which cargo
//! passes to `harness = false` benches) ignored.

use std::path::PathBuf;

/// What the command line asked for.
pub struct Options {
    pub quick: bool,
    pub out: Option<PathBuf>,
    pub runs: Option<usize>,
    /// The sections to run, each one of the bench's.
    pub only: Vec<String>,
}

/// Reads `args` for a bench whose sections are `sections` (all run by default).
/// `Err("help")` for `-h` / `--help`.
pub fn parse_options(args: &[String], sections: &[&str]) -> Result<Options, String> {
    let mut options = Options {
        quick: false,
        out: None,
        runs: None,
        only: sections.iter().map(|s| s.to_string()).collect(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().cloned().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--bench" => {}
            "--quick" => options.quick = true,
            "--out" => options.out = Some(PathBuf::from(value("--out")?)),
            "--runs" => {
                let text = value("--runs")?;
                let n = text.parse().ok().filter(|n| (1..=20).contains(n));
                options.runs = Some(n.ok_or(format!("--runs: bad count {text:?} (1-20)"))?);
            }
            "--only" => {
                options.only = value("--only")?.split(',').map(String::from).collect();
                if let Some(bad) = options
                    .only
                    .iter()
                    .find(|s| !sections.contains(&s.as_str()))
                {
                    return Err(format!("--only: unknown section {bad:?}"));
                }
            }
            "-h" | "--help" => return Err("help".into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}
