//! What a plan reads besides the flags: the machine's cores, the files the
//! flags name, the name service and the kernel's randomness. The plan code
//! asks a [`Sources`] for them and touches nothing itself, so tests hand it
//! in-memory files and certificates; the binary passes [`System`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;

use crate::io::tls::{self, TlsCert};

/// Largest music-on-hold file read: 10 minutes of 16-bit samples at
/// 8 kHz, and room for the WAV's other chunks.
const MAX_MUSIC_FILE: u64 = 16 << 20;

/// Where a plan's inputs beyond the flags come from.
pub trait Sources {
    /// Usable cores: the default `--workers`.
    fn cores(&self) -> usize;
    /// A text file: the tenants file.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// A binary file: music on hold (WAV).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// A PEM certificate chain and its key, chosen by SNI `domain` (`None`:
    /// the default certificate).
    fn load_cert(&self, domain: Option<String>, cert: &Path, key: &Path) -> Result<TlsCert, String>;
    /// Trust anchors (PEM) for the TLS connections sipark opens.
    fn load_roots(&self, ca: &Path) -> Result<Arc<RootCertStore>, String>;
    /// The addresses of `host` (an IP literal or a name) with `port`.
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
    /// The digest nonce key of this process.
    fn nonce_secret(&self) -> io::Result<[u8; 32]>;
}

/// The real sources: this machine, its files, its resolver, `getrandom(2)`
/// (through [`crate::io::sys::random_bytes`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Sources for System {
    fn cores(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        // A WAV of the longest music accepted is under 10 MB; a larger file
        // is refused before it is read.
        let len = std::fs::metadata(path)?.len();
        if len > MAX_MUSIC_FILE {
            return Err(io::Error::other(format!("{len} bytes: larger than any music on hold accepted")));
        }
        std::fs::read(path)
    }

    fn load_cert(&self, domain: Option<String>, cert: &Path, key: &Path) -> Result<TlsCert, String> {
        tls::load_cert(domain, cert, key)
    }

    fn load_roots(&self, ca: &Path) -> Result<Arc<RootCertStore>, String> {
        tls::load_roots(ca)
    }

    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        (host, port).to_socket_addrs().map(Iterator::collect)
    }

    fn nonce_secret(&self) -> io::Result<[u8; 32]> {
        crate::io::sys::random_bytes()
    }
}
