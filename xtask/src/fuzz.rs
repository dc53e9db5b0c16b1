//! `cargo xtask fuzz TARGET [--seconds S]`: one `cargo +nightly fuzz run` of a target of
//! fuzz/ (parse_roundtrip, shard_datagrams) for S seconds (default 60), seeded and with the SIP
//! dictionary, then one line of figures.
//!
//! The seeds are written afresh by the fuzz crate's `seeds` binary (stable toolchain) into
//! target/fuzz-seeds/TARGET: the parser corpus and the RFC 4475 messages, and for the shard
//! each of them as a one-datagram input plus a whole park cycle. The corpus the fuzzer grows is
//! fuzz/corpus/TARGET (git-ignored), so that successive runs build on each other. libFuzzer
//! reads fuzz/sip.dict. A crash leaves its input in fuzz/artifacts/TARGET, named in the summary;
//! add it to the corpus tests.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, ExitCode, Stdio};

use crate::root;

const TARGETS: [&str; 2] = ["parse_roundtrip", "shard_datagrams"];

/// What libFuzzer reported.
#[derive(Debug, Default)]
struct Figures {
    runs: Option<u64>,
    cov: Option<u64>,
    features: Option<u64>,
    corpus: Option<u64>,
    seconds: Option<u64>,
    artifact: Option<String>,
}

impl Figures {
    /// Takes what a line of libFuzzer's output says.
    fn read(&mut self, line: &str) {
        let word_after = |key: &str| -> Option<u64> {
            let rest = &line[line.find(key)? + key.len()..];
            rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        };
        if line.starts_with('#') {
            self.cov = word_after(" cov: ").or(self.cov);
            self.features = word_after(" ft: ").or(self.features);
            self.corpus = word_after(" corp: ").or(self.corpus);
        }
        if let Some(n) = word_after("stat::number_of_executed_units:") {
            self.runs = Some(n);
        }
        if line.starts_with("Done ") {
            self.runs = word_after("Done ").or(self.runs);
            self.seconds = word_after(" runs in ");
        }
        if let Some(at) = line.find("Test unit written to ") {
            self.artifact = Some(line[at + "Test unit written to ".len()..].trim().to_owned());
        }
    }
}

pub fn fuzz(args: &[OsString]) -> ExitCode {
    let mut target = None;
    let mut seconds: u64 = 60;
    let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => match it.next().and_then(|s| s.parse().ok()) {
                Some(s) if s > 0 => seconds = s,
                _ => return usage("--seconds needs a positive number"),
            },
            t if TARGETS.contains(&t) => target = Some(t.to_owned()),
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    let Some(target) = target else { return usage("which target?") };
    let root = root();
    let seeds = root.join("target/fuzz-seeds");
    let status = Command::new("cargo")
        .current_dir(&root)
        .args(["run", "-q", "-p", "sipark-fuzz", "--bin", "seeds", "--"])
        .arg(seeds.join(TARGETS[0]))
        .arg(seeds.join(TARGETS[1]))
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("xtask fuzz: writing the seeds failed");
        return ExitCode::FAILURE;
    }
    let corpus = root.join("fuzz/corpus").join(&target);
    if let Err(e) = std::fs::create_dir_all(&corpus) {
        eprintln!("xtask fuzz: {}: {e}", corpus.display());
        return ExitCode::FAILURE;
    }
    let dict = root.join("fuzz/sip.dict");
    // The rustup proxy (not $CARGO, which is this toolchain's cargo) picks the nightly.
    let child = Command::new("cargo")
        .current_dir(&root)
        .args(["+nightly", "fuzz", "run", &target])
        .arg(&corpus)
        .arg(seeds.join(&target))
        .arg("--")
        .arg(format!("-dict={}", dict.display()))
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1")
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask fuzz: cannot run `cargo +nightly fuzz` (cargo install cargo-fuzz): {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut figures = Figures::default();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("{line}");
            figures.read(&line);
        }
    }
    let ok = child.wait().is_ok_and(|s| s.success());
    let n = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    println!(
        "fuzz {target}: {} executions in {} s, coverage {} edges ({} features), corpus {} inputs, {}",
        n(figures.runs),
        n(figures.seconds),
        n(figures.cov),
        n(figures.features),
        n(figures.corpus),
        match (&figures.artifact, ok) {
            (Some(a), _) => format!("CRASH: {a}"),
            (None, true) => "no crash".to_owned(),
            (None, false) => "the fuzzer failed (see above)".to_owned(),
        }
    );
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("xtask fuzz: {why}\nusage: cargo xtask fuzz {{{}}} [--seconds S]", TARGETS.join("|"));
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_output_is_read() {
        let mut f = Figures::default();
        for line in [
            "#2\tINITED cov: 812 ft: 1500 corp: 90/20Kb exec/s: 0 rss: 40Mb",
            "#1048576\tpulse  cov: 1210 ft: 4022 corp: 700/150Kb lim: 4096 exec/s: 34952 rss: 400Mb",
            "#1500000\tDONE   cov: 1234 ft: 4100 corp: 720/151Kb lim: 4096 exec/s: 25000 rss: 410Mb",
            "Done 1500000 runs in 61 second(s)",
            "stat::number_of_executed_units: 1500001",
            "==1== Test unit written to fuzz/artifacts/parse_roundtrip/crash-abc",
        ] {
            f.read(line);
        }
        assert_eq!(
            (f.runs, f.seconds, f.cov, f.features, f.corpus),
            (Some(1_500_001), Some(61), Some(1234), Some(4100), Some(720))
        );
        assert_eq!(f.artifact.as_deref(), Some("fuzz/artifacts/parse_roundtrip/crash-abc"));
    }
}
