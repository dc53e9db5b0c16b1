//! Writes the seed corpora of the fuzz targets (`cargo xtask fuzz` runs it):
//! `seeds PARSE_DIR SHARD_DIR` writes every message of tests/parser/corpus and
//! tests/rfc4475 into PARSE_DIR, and into SHARD_DIR each of them as a
//! one-datagram input plus the whole park cycle of `sipark_fuzz::seeds`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn messages() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = Vec::new();
    for dir in ["tests/parser/corpus", "tests/rfc4475"] {
        let dir = root.join(dir);
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        for f in files.into_iter().filter(|f| f.extension().is_some_and(|x| x == "sip" || x == "dat")) {
            let name = f.file_stem().and_then(|s| s.to_str()).unwrap_or("msg").to_owned();
            out.push((name, fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()))));
        }
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [parse, shard] = &args[..] else {
        eprintln!("usage: seeds PARSE_DIR SHARD_DIR");
        return ExitCode::from(2);
    };
    let (parse, shard) = (Path::new(parse), Path::new(shard));
    for d in [parse, shard] {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    }
    let msgs = messages();
    for (name, bytes) in &msgs {
        write(parse, name, bytes);
        let mut input = Vec::new();
        sipark_fuzz::frame(&mut input, 1, bytes);
        write(shard, name, &input);
    }
    write(shard, "park_cycle", &sipark_fuzz::seeds::park_cycle());
    println!(
        "{} parser seeds in {}, {} shard seeds in {}",
        msgs.len(),
        parse.display(),
        msgs.len() + 1,
        shard.display()
    );
    ExitCode::SUCCESS
}
