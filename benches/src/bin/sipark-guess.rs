//! `sipark-guess`: the online password-guessing attack of issue 13 against
//! a running sipark (`sipark_benches::guess`), for
//! `cargo xtask bench --guessing`. Prints what it saw and what the engine
//! counted, then one `RESULT key=value ...` line for xtask.
//!
//! Exit status: 0 when the run was done (whatever the figures), 1 when a
//! password was found, 2 for bad flags or when the engine never answered.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sipark_benches::guess::{self, GuessConfig};

/// Guesses one user's password from one source as fast as sipark answers.
#[derive(Debug, Parser)]
#[command(name = "sipark-guess", version, about)]
struct Args {
    /// The engine's UDP address.
    #[arg(long, value_name = "ADDR")]
    target: SocketAddr,
    /// The source address (the attacker's).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// The tenant (realm).
    #[arg(long, value_name = "DOMAIN", default_value = "acme.example")]
    domain: String,
    /// The user whose password is guessed.
    #[arg(long, value_name = "USER", default_value = "101")]
    user: String,
    /// How long to attack, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    seconds: f64,
    /// Requests in flight.
    #[arg(long, value_name = "N", default_value_t = 32)]
    window: usize,
    /// A request unanswered this long is given up, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200)]
    timeout_ms: u64,
    /// The engine's metrics address (for what it counted after the ban).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// A name for this run in the output.
    #[arg(long, value_name = "NAME", default_value = "run")]
    label: String,
}

fn main() -> ExitCode {
    let a = Args::parse();
    if !(a.seconds > 0.0 && a.seconds <= 3600.0) || a.window == 0 {
        eprintln!("sipark-guess: --seconds must be in (0, 3600] and --window at least 1");
        return ExitCode::from(2);
    }
    let cfg = GuessConfig {
        target: a.target,
        bind: a.bind,
        domain: a.domain.clone(),
        user: a.user.clone(),
        duration: Duration::from_secs_f64(a.seconds),
        window: a.window,
        timeout: Duration::from_millis(a.timeout_ms.max(1)),
        metrics: a.metrics,
    };
    let r = match guess::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sipark-guess: {e}");
            return ExitCode::from(2);
        }
    };
    let ms = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0));
    println!(
        "sipark-guess [{}]: {} -> {}, user {}@{}, {} in flight",
        a.label, a.bind, a.target, a.user, a.domain, a.window
    );
    println!("  run                      {:.1} s", r.elapsed.as_secs_f64());
    println!("  guesses sent             {}", r.sent);
    println!("  guesses answered (403)   {} ({:.0}/s until the ban)", r.answered, r.answered_per_sec());
    println!("  challenges (401)         {}", r.challenges);
    println!("  requests unanswered      {}", r.unanswered);
    println!("  ban seen in the metrics  {} ms (last answer at {} ms)", ms(r.ban_seen), ms(r.last_answer));
    let mut result = format!(
        "RESULT label={} sent={} answered={} answered_per_s={:.0} challenges={} ban_ms={} last_answer_ms={} found={}",
        a.label,
        r.sent,
        r.answered,
        r.answered_per_sec(),
        r.challenges,
        ms(r.ban_seen),
        ms(r.last_answer),
        r.found.as_deref().unwrap_or("-"),
    );
    if let Some((t, d)) = r.after_ban() {
        let per_min = |n: u64| n as f64 * 60.0 / t.as_secs_f64().max(1e-9);
        println!("  after the ban ({:.1} s):", t.as_secs_f64());
        println!("    guesses sent           {}", r.sent_after_ban);
        println!("    answers received       {}", r.answers_after_ban);
        println!("    guesses evaluated      {} ({:.1}/min)", d.failures, per_min(d.failures));
        println!("    datagrams to a worker  {}", d.datagrams_in);
        println!("    dropped by the shards  {}", d.banned_drops);
        println!("    dropped in XDP         {}", d.xdp_banned);
        result.push_str(&format!(
            " after_s={:.1} sent_after={} answers_after={} evaluated_after={} evaluated_per_min={:.1} \
             reached_worker={} shard_drops={} xdp_drops={}",
            t.as_secs_f64(),
            r.sent_after_ban,
            r.answers_after_ban,
            d.failures,
            per_min(d.failures),
            d.datagrams_in,
            d.banned_drops,
            d.xdp_banned
        ));
    }
    if let Some(p) = &r.found {
        println!("  PASSWORD FOUND: {p}");
    }
    println!("{result}");
    if r.found.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
