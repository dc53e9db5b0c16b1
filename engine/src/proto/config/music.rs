//! Music on hold in the configuration: what each tenant's parked calls
//! hear, and the audio decoded for it (issue 14).

use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use super::{Config, TenantMode, TenantPolicy};
use crate::proto::media::audio::Audio;

/// What a tenant's parked calls hear.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Moh {
    /// Nothing: the park answers `a=inactive` (`moh = "off"`).
    Off,
    /// sipark's own tune (the default).
    #[default]
    Tune,
    /// A WAV file, by its path as configured; decoded into [`Music::files`].
    File(Box<str>),
}

impl Moh {
    /// `off`, `tune`, or a file's path.
    pub fn parse(v: &str) -> Result<Moh, &'static str> {
        match v.trim() {
            "" => Err("moh needs \"off\", \"tune\" or a WAV file's path"),
            "off" => Ok(Moh::Off),
            "tune" => Ok(Moh::Tune),
            path if path.len() > 4096 || path.bytes().any(|b| b.is_ascii_control()) => {
                Err("moh: a path of at most 4096 characters, no control characters")
            }
            path => Ok(Moh::File(path.into())),
        }
    }
}

/// The music every tenant's policy can name, decoded once (at start-up
/// and on each reload), shared by every shard.
#[derive(Debug, Clone)]
pub struct Music {
    /// sipark's own tune.
    pub tune: Arc<Audio>,
    /// Each file a policy names: its path as configured → its audio.
    pub files: HashMap<Box<str>, Arc<Audio>>,
    /// Most streams one shard runs at once; calls past it get inactive hold.
    pub max_streams: u32,
}

impl Default for Music {
    fn default() -> Self {
        Music { tune: Audio::shared_tune(), files: HashMap::new(), max_streams: DEFAULT_MAX_STREAMS }
    }
}

/// Streams per worker unless `--moh-max-streams` says otherwise: about
/// 200,000 packets a second at 20 ms, what one worker on the 2-core test VM
/// sends within its packet times with room left for signalling
/// (docs/benchmarks.md, "Music on hold"; ADR 0023).
pub const DEFAULT_MAX_STREAMS: u32 = 4_096;

impl Config {
    /// The music `policy`'s parked calls hear: `None` when it is off (or
    /// names a file that was not decoded, which start-up and reload refuse).
    pub fn music_of(&self, policy: &TenantPolicy) -> Option<&Arc<Audio>> {
        match &policy.moh {
            Moh::Off => None,
            Moh::Tune => Some(&self.music.tune),
            Moh::File(path) => self.music.files.get(path),
        }
    }

    /// Every file a policy of this configuration names, once each.
    pub fn music_files(&self) -> Vec<Box<str>> {
        let tenants = match &self.tenants {
            TenantMode::Strict(t) => t.values().collect(),
            TenantMode::Open => Vec::new(),
        };
        let mut seen = HashSet::new();
        let files = std::iter::once(&self.defaults).chain(tenants).filter_map(|p| match &p.moh {
            Moh::File(path) => Some(path),
            _ => None,
        });
        files.filter(|path| seen.insert(*path)).cloned().collect()
    }
}
