//! Compiles the BPF programs in `../ebpf/*.bpf.c` with clang and generates
//! `$OUT_DIR/bpf_objects.rs`, which embeds each object as
//! `pub static <STEM>: Option<&[u8]>` (8-byte aligned), plus
//! `pub const MISSING: &str`.
//!
//! The compiler is `$CLANG` if set, else `clang-19`, else `clang` when its
//! version is at least 15. When no usable clang (or no libbpf headers) is
//! found, the build still succeeds: every object is `None`, `MISSING` says
//! how to fix it, and one `cargo:warning` is printed. When clang is usable
//! but one of our programs does not compile, the build fails with clang's
//! output: that is a bug in our C.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MISSING_FIX: &str = "install clang-19 and libbpf-dev: apt-get install clang-19 libbpf-dev, then rebuild";
const MIN_CLANG_MAJOR: u32 = 15;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let ebpf = manifest.join("..").join("ebpf");

    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed={}", ebpf.display());
    let mut sources = Vec::new();
    let mut headers = Vec::new();
    if let Ok(dir) = fs::read_dir(&ebpf) {
        for entry in dir.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            println!("cargo:rerun-if-changed={}", path.display());
            if let Some(stem) = name.strip_suffix(".bpf.c") {
                sources.push((stem.to_owned(), path));
            } else if name.ends_with(".h") {
                headers.push(path);
            }
        }
    }
    sources.sort();

    let generated = match find_toolchain() {
        Err(why) => {
            // Paths that do not exist make Cargo rerun this script on every
            // build, so the programs appear as soon as the packages are
            // installed (`cargo xtask test` installs them after clippy has
            // already built the engine once without them).
            println!("cargo:rerun-if-changed=/usr/bin/clang-19");
            println!("cargo:rerun-if-changed=/usr/include/bpf/bpf_helpers.h");
            println!("cargo:warning=BPF programs not built ({why}); to enable them, {MISSING_FIX}");
            render(&sources, None, &format!("BPF programs were not built ({why}); {MISSING_FIX}"))
        }
        Ok(tc) => {
            let mut objects = Vec::new();
            for (stem, src) in &sources {
                let obj = out_dir.join(format!("{stem}.bpf.o"));
                compile(&tc, src, &obj, &ebpf);
                objects.push(obj);
            }
            render(&sources, Some(&objects), "")
        }
    };
    let path = out_dir.join("bpf_objects.rs");
    fs::write(&path, generated).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A clang that can build BPF objects, and the include flags it needs.
struct Toolchain {
    clang: PathBuf,
    includes: Vec<PathBuf>,
}

fn compile(tc: &Toolchain, src: &Path, obj: &Path, ebpf: &Path) {
    let mut cmd = Command::new(&tc.clang);
    cmd.args(["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror"]);
    cmd.arg("-I").arg(ebpf);
    for inc in &tc.includes {
        cmd.arg("-isystem").arg(inc);
    }
    cmd.arg("-c").arg(src).arg("-o").arg(obj);
    let out = cmd.output().unwrap_or_else(|e| panic!("running {}: {e}", tc.clang.display()));
    if !out.status.success() {
        panic!(
            "{} failed to compile {} ({}):\n{}{}",
            tc.clang.display(),
            src.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Finds clang and the include directories, and proves with a tiny
/// translation unit that `linux/bpf.h` and `bpf/bpf_helpers.h` are usable.
/// `Err` carries a short reason for the warning.
fn find_toolchain() -> Result<Toolchain, String> {
    let clang = find_clang()?;
    let includes = multiarch_includes(&clang);
    let probe = "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\nint x;\n";
    let mut cmd = Command::new(&clang);
    cmd.args(["-target", "bpf", "-fsyntax-only", "-x", "c"]);
    for inc in &includes {
        cmd.arg("-isystem").arg(inc);
    }
    cmd.arg("-").stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", clang.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(probe.as_bytes()).map_err(|e| format!("{}: {e}", clang.display()))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("{}: {e}", clang.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().find(|l| l.contains("error")).unwrap_or("header probe failed").trim();
        let what =
            if first.contains("bpf_helpers.h") { "libbpf-dev headers (bpf/bpf_helpers.h) missing" } else { first };
        return Err(format!("{} cannot build BPF: {what}", clang.display()));
    }
    Ok(Toolchain { clang, includes })
}

fn find_clang() -> Result<PathBuf, String> {
    if let Some(c) = env::var_os("CLANG").filter(|c| !c.is_empty()) {
        let c = PathBuf::from(c);
        return match clang_major(&c) {
            Some(_) => Ok(c),
            None => Err(format!("CLANG={} does not run", c.display())),
        };
    }
    if clang_major(Path::new("clang-19")).is_some() {
        return Ok(PathBuf::from("clang-19"));
    }
    match clang_major(Path::new("clang")) {
        Some(v) if v >= MIN_CLANG_MAJOR => Ok(PathBuf::from("clang")),
        Some(v) => Err(format!("clang {v} is older than {MIN_CLANG_MAJOR}")),
        None => Err("no clang-19 or clang found".to_owned()),
    }
}

/// The major version from `clang --version` ("... clang version 19.1.7 ...").
fn clang_major(clang: &Path) -> Option<u32> {
    let out = Command::new(clang).arg("--version").stdin(Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let rest = &text[text.find("version ")? + "version ".len()..];
    rest.split(['.', ' ']).next()?.parse().ok()
}

/// Directories that hold `asm/types.h` when `/usr/include/asm` does not
/// exist (Debian/Ubuntu put it under `/usr/include/<multiarch triple>`).
fn multiarch_includes(clang: &Path) -> Vec<PathBuf> {
    if Path::new("/usr/include/asm/types.h").exists() {
        return Vec::new();
    }
    let mut triples = Vec::new();
    for (prog, arg) in [("gcc", "-dumpmachine"), ("cc", "-dumpmachine")] {
        if let Some(t) = run_trimmed(Path::new(prog), arg) {
            triples.push(t);
        }
    }
    if let Some(t) = run_trimmed(clang, "-print-multiarch") {
        triples.push(t);
    }
    if let Ok(arch) = env::var("CARGO_CFG_TARGET_ARCH") {
        let arch = match arch.as_str() {
            "x86" => "i386".to_owned(),
            "powerpc64" => "powerpc64le".to_owned(),
            a => a.to_owned(),
        };
        triples.push(format!("{arch}-linux-gnu"));
    }
    triples
        .into_iter()
        .map(|t| Path::new("/usr/include").join(t))
        .find(|d| d.join("asm/types.h").exists())
        .into_iter()
        .collect()
}

fn run_trimmed(prog: &Path, arg: &str) -> Option<String> {
    let out = Command::new(prog).arg(arg).stdin(Stdio::null()).output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !s.is_empty() && !s.contains('/')).then_some(s)
}

/// The generated Rust: one aligned static per program (object files must be
/// aligned for the ELF parser), and `MISSING`.
fn render(sources: &[(String, PathBuf)], objects: Option<&[PathBuf]>, missing: &str) -> String {
    let mut s = String::from("// @generated by engine/build.rs from ebpf/*.bpf.c\n");
    if objects.is_some() {
        s.push_str(
            "/// Gives the embedded bytes the alignment the ELF parser needs.\n\
             #[repr(C, align(8))]\n\
             pub struct Aligned<B: ?Sized>(pub B);\n",
        );
    }
    for (i, (stem, _)) in sources.iter().enumerate() {
        let name: String =
            stem.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        match objects {
            Some(objs) => {
                let _ = writeln!(
                    s,
                    "/// The compiled `ebpf/{stem}.bpf.c`.\n\
                     pub static {name}: Option<&[u8]> = {{\n    \
                     static A: &Aligned<[u8]> = &Aligned(*include_bytes!({:?}));\n    \
                     Some(&A.0)\n}};",
                    objs[i].display().to_string()
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "/// `ebpf/{stem}.bpf.c` was not built (see [`MISSING`]).\npub static {name}: Option<&[u8]> = None;"
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "/// Why the BPF programs are missing, and how to fix it; empty when built.\npub const MISSING: &str = {missing:?};"
    );
    s
}
