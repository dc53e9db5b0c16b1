//! The music: WAV input, G.711 encoding and sipark's own tune.
//!
//! Sans-IO: [`Audio::from_wav`] takes the bytes of a file the caller has read;
//! the music is encoded once, in both codecs, and every stream of a tenant
//! reads it through [`Audio::fill`].

use std::sync::{Arc, OnceLock};

use crate::proto::sip::sdp::Codec;

/// Samples a second, for the music and for both G.711 codecs.
pub const SAMPLE_RATE: u32 = 8000;
/// Longest music accepted: 10 minutes of samples (refuse longer files).
pub const MAX_SAMPLES: usize = 8000 * 600;
/// Shortest: 20 ms (160 samples).
pub const MIN_SAMPLES: usize = 160;

/// Why a WAV file (or a set of samples) cannot be the music.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum AudioError {
    /// The bytes do not start with `RIFF`, a size and `WAVE`.
    #[error("not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    /// The file ends inside a chunk's 8-byte header, before a fmt and a data chunk were found.
    #[error("truncated WAV file: the chunk header at byte {at} is cut off")]
    TruncatedChunkHeader { at: usize },
    /// A chunk other than data states more bytes than the file has left, before a fmt and a data chunk were found.
    #[error("truncated WAV file: the {:?} chunk states {stated} bytes, only {left} are left", String::from_utf8_lossy(.id))]
    TruncatedChunk { id: [u8; 4], stated: u32, left: usize },
    /// The fmt chunk is smaller than its format needs (16 bytes, 40 for WAVE_FORMAT_EXTENSIBLE).
    #[error("fmt chunk of {size} bytes: needs at least {need}")]
    FmtTooShort { size: usize, need: usize },
    /// No fmt chunk, so the samples cannot be read.
    #[error("no fmt chunk")]
    NoFmt,
    /// No data chunk: the file holds no samples.
    #[error("no data chunk")]
    NoData,
    /// A format other than PCM, µ-law or A-law (the tag, or the SubFormat of WAVE_FORMAT_EXTENSIBLE).
    #[error("format tag {0} ({name}): needs PCM 16-bit, µ-law or A-law", name = format_name(*.0))]
    Format(u16),
    /// WAVE_FORMAT_EXTENSIBLE whose SubFormat GUID is not one of the standard WAVE formats.
    #[error("WAVE_FORMAT_EXTENSIBLE with a non-standard SubFormat GUID: needs PCM 16-bit, µ-law or A-law")]
    SubFormatGuid,
    /// More than one channel.
    #[error("{0} channels: music on hold needs mono")]
    Channels(u16),
    /// A sample rate other than 8000 Hz (sipark does not resample).
    #[error("sample rate {0} Hz: music on hold needs 8000 Hz")]
    SampleRate(u32),
    /// PCM that is not 16 bits a sample.
    #[error("{0}-bit PCM: needs 16-bit")]
    PcmBits(u16),
    /// µ-law or A-law that is not 8 bits a sample.
    #[error("{0}-bit µ-law/A-law: needs 8-bit")]
    G711Bits(u16),
    /// Fewer than [`MIN_SAMPLES`] samples.
    #[error("too short: {0} samples, at least 160 (20 ms)")]
    TooShort(usize),
    /// More than [`MAX_SAMPLES`] samples.
    #[error("too long: {0} samples ({secs} s), at most 10 minutes ({MAX_SAMPLES} samples)", secs = .0 / 8000)]
    TooLong(usize),
}

/// A readable name for a WAVE format tag, for [`AudioError::Format`].
fn format_name(tag: u16) -> &'static str {
    match tag {
        0x0002 | 0x0011 => "ADPCM",
        0x0003 => "IEEE float",
        0x0055 => "MPEG layer 3",
        _ => "unsupported",
    }
}

/// Music encoded once in both codecs; every stream of a tenant reads it (held in an Arc by the caller).
///
/// Always between [`MIN_SAMPLES`] and [`MAX_SAMPLES`] samples long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    pcmu: Box<[u8]>,
    pcma: Box<[u8]>,
}

/// How the samples of a data chunk are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sample {
    Pcm16,
    Ulaw,
    Alaw,
}

/// Bytes 2..16 of the SubFormat GUID of every standard format (`xxxx0000-0000-0010-8000-00aa00389b71`).
const GUID_TAIL: [u8; 14] = [0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71];

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn check_len(n: usize) -> Result<(), AudioError> {
    match n {
        n if n < MIN_SAMPLES => Err(AudioError::TooShort(n)),
        n if n > MAX_SAMPLES => Err(AudioError::TooLong(n)),
        _ => Ok(()),
    }
}

/// Reads the fmt chunk's body: how the samples are stored, once rate and channels are right.
fn parse_fmt(f: &[u8]) -> Result<Sample, AudioError> {
    if f.len() < 16 {
        return Err(AudioError::FmtTooShort { size: f.len(), need: 16 });
    }
    let (mut tag, channels, rate, bits) = (le16(f, 0), le16(f, 2), le32(f, 4), le16(f, 14));
    if tag == 0xFFFE {
        if f.len() < 40 {
            return Err(AudioError::FmtTooShort { size: f.len(), need: 40 });
        }
        if f[26..40] != GUID_TAIL {
            return Err(AudioError::SubFormatGuid);
        }
        tag = le16(f, 24);
    }
    let sample = match tag {
        1 => Sample::Pcm16,
        6 => Sample::Alaw,
        7 => Sample::Ulaw,
        other => return Err(AudioError::Format(other)),
    };
    if channels != 1 {
        return Err(AudioError::Channels(channels));
    }
    if rate != SAMPLE_RATE {
        return Err(AudioError::SampleRate(rate));
    }
    match (sample, bits) {
        (Sample::Pcm16, 16) | (Sample::Ulaw | Sample::Alaw, 8) => Ok(sample),
        (Sample::Pcm16, _) => Err(AudioError::PcmBits(bits)),
        _ => Err(AudioError::G711Bits(bits)),
    }
}

impl Audio {
    /// From a WAV file's bytes: RIFF/WAVE, chunks in any order (unknown ones such as LIST or fact
    /// are skipped, with the pad byte of odd-sized chunks), format PCM 16-bit little-endian,
    /// A-law, µ-law, or WAVE_FORMAT_EXTENSIBLE of one of those; 8000 Hz, mono.
    ///
    /// A data chunk whose stated size is 0 or 0xFFFFFFFF (left so by streaming writers) or runs
    /// past the end of the file holds the rest of the file. An odd trailing byte of 16-bit data is
    /// ignored. µ-law or A-law data is kept byte for byte in its own codec.
    pub fn from_wav(bytes: &[u8]) -> Result<Audio, AudioError> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(AudioError::NotWav);
        }
        let (mut fmt, mut data) = (None, None);
        let mut at = 12;
        while at < bytes.len() {
            let have_both = fmt.is_some() && data.is_some();
            let Some(head) = bytes.get(at..at + 8) else {
                if have_both {
                    break; // trailing bytes after a complete file
                }
                return Err(AudioError::TruncatedChunkHeader { at });
            };
            let id = [head[0], head[1], head[2], head[3]];
            let stated = le32(head, 4);
            let body = &bytes[at + 8..];
            let size = stated as usize;
            if &id == b"data" && data.is_none() {
                if stated == 0 || stated == u32::MAX || size > body.len() {
                    data = Some(body);
                    break;
                }
                data = Some(&body[..size]);
            } else if size > body.len() {
                if have_both {
                    break; // a cut-off chunk after everything needed, e.g. LIST at the end
                }
                return Err(AudioError::TruncatedChunk { id, stated, left: body.len() });
            } else if &id == b"fmt " && fmt.is_none() {
                fmt = Some(&body[..size]);
            }
            at += 8 + size + (size & 1);
        }
        let sample = parse_fmt(fmt.ok_or(AudioError::NoFmt)?)?;
        let data = data.ok_or(AudioError::NoData)?;
        match sample {
            Sample::Pcm16 => {
                check_len(data.len() / 2)?;
                let samples = data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]));
                Ok(Audio::encode(samples))
            }
            Sample::Ulaw => {
                check_len(data.len())?;
                let pcma = data.iter().map(|&b| alaw_encode(ulaw_decode(b))).collect();
                Ok(Audio { pcmu: data.into(), pcma })
            }
            Sample::Alaw => {
                check_len(data.len())?;
                let pcmu = data.iter().map(|&b| ulaw_encode(alaw_decode(b))).collect();
                Ok(Audio { pcmu, pcma: data.into() })
            }
        }
    }

    /// From 16-bit samples at 8 kHz (length checked like [`Audio::from_wav`]).
    pub fn from_pcm(samples: &[i16]) -> Result<Audio, AudioError> {
        check_len(samples.len())?;
        Ok(Audio::encode(samples.iter().copied()))
    }

    /// Encodes samples whose count is already checked.
    fn encode(samples: impl Iterator<Item = i16> + Clone) -> Audio {
        Audio { pcmu: samples.clone().map(ulaw_encode).collect(), pcma: samples.map(alaw_encode).collect() }
    }

    /// [`Audio::tune`], made once per process and shared by every
    /// configuration that names it.
    pub fn shared_tune() -> Arc<Audio> {
        static TUNE: OnceLock<Arc<Audio>> = OnceLock::new();
        Arc::clone(TUNE.get_or_init(|| Arc::new(Audio::tune())))
    }

    /// sipark's own music, synthesized: a slow arpeggio over C, Am, F and G with a bass note and
    /// a long top note on each bar, soft plucked sines with two low harmonics. 14 s, peak at
    /// -12 dBFS, starting and ending in silence so the loop is seamless. Only exactly rounded f64
    /// arithmetic (no libm sin or exp), so it is the same bytes on every platform.
    pub fn tune() -> Audio {
        let samples = tune_samples();
        debug_assert!(check_len(samples.len()).is_ok());
        Audio::encode(samples.into_iter())
    }

    /// Samples in the loop.
    pub fn len(&self) -> usize {
        self.pcmu.len()
    }

    /// Never true: music has at least [`MIN_SAMPLES`] samples.
    pub fn is_empty(&self) -> bool {
        self.pcmu.is_empty()
    }

    /// Writes `out.len()` samples of `codec` starting at sample `at` (taken modulo [`Audio::len`]),
    /// wrapping around the loop's end as often as needed.
    pub fn fill(&self, codec: Codec, at: usize, out: &mut [u8]) {
        let src = self.encoded(codec);
        let mut pos = at % src.len();
        let mut rest = out;
        while !rest.is_empty() {
            let n = rest.len().min(src.len() - pos);
            let (head, tail) = rest.split_at_mut(n);
            head.copy_from_slice(&src[pos..pos + n]);
            rest = tail;
            pos = 0;
        }
    }

    /// The encoded loop of `codec`.
    pub fn encoded(&self, codec: Codec) -> &[u8] {
        match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        }
    }
}

/// An eighth note of the tune: 0.4 s.
const EIGHTH: usize = 3200;
/// Silence before the first note.
const LEAD: usize = 160;
/// The loop: 4 bars of 8 eighths, the last notes ringing out over 3 more (14 s).
const TUNE_LEN: usize = 35 * EIGHTH;
/// The peak: -12 dBFS (32767 × 10^(-12/20)).
const TUNE_PEAK: f64 = 8231.0;

/// sin(2π·turns), as a polynomial (Taylor to x¹¹ after reduction to ±π/2: error below 1e-7).
fn sin_turns(turns: f64) -> f64 {
    let p = turns - (turns + 0.5).floor(); // [-0.5, 0.5)
    let p = if p.abs() > 0.25 { p.signum() * 0.5 - p } else { p }; // [-0.25, 0.25]
    let x = p * std::f64::consts::TAU;
    let x2 = x * x;
    x * (1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0 * (1.0 - x2 / 72.0 * (1.0 - x2 / 110.0)))))
}

/// The frequency of MIDI note `m` (A4 = 69 = 440 Hz), equal temperament.
fn note_hz(m: u8) -> f64 {
    const SEMITONE: f64 = 1.059_463_094_359_295_3; // 2^(1/12)
    let d = i32::from(m) - 69;
    (0..d.rem_euclid(12)).fold(440.0 * 2f64.powi(d.div_euclid(12)), |hz, _| hz * SEMITONE)
}

/// Adds one note to `mix`: a sine with its 2nd and 3rd harmonics, a smooth attack of `attack`
/// samples and a (1 − u)³ decay that reaches zero, with zero slope, at the note's end.
fn add_note(mix: &mut [f64], midi: u8, start: usize, len: usize, attack: usize, level: f64) {
    let hz = note_hz(midi) / f64::from(SAMPLE_RATE);
    for (t, out) in mix[start..start + len].iter_mut().enumerate() {
        let a = (t as f64 / attack as f64).min(1.0);
        let d = 1.0 - t as f64 / len as f64;
        let env = a * a * (3.0 - 2.0 * a) * d * d * d;
        let turns = hz * t as f64;
        let voice = sin_turns(turns) + 0.25 * sin_turns(2.0 * turns) + 0.08 * sin_turns(3.0 * turns);
        *out += level * env * voice;
    }
}

/// The tune's 16-bit samples.
fn tune_samples() -> Vec<i16> {
    // Per bar: the chord's bass note, its four arpeggio notes, the top note (MIDI numbers).
    const BARS: [(u8, [u8; 4], u8); 4] = [
        (48, [55, 60, 64, 67], 76), // C: C3; G3 C4 E4 G4; E5
        (45, [57, 60, 64, 69], 72), // Am: A2; A3 C4 E4 A4; C5
        (41, [53, 57, 60, 65], 69), // F: F2; F3 A3 C4 F4; A4
        (43, [55, 59, 62, 67], 71), // G: G2; G3 B3 D4 G4; B4
    ];
    const PATTERN: [usize; 8] = [0, 1, 2, 3, 2, 1, 2, 1];
    let mut mix = vec![0.0; TUNE_LEN];
    for (bar, &(bass, arp, top)) in BARS.iter().enumerate() {
        let bar_at = LEAD + bar * 8 * EIGHTH;
        add_note(&mut mix, bass, bar_at, 8 * EIGHTH, 320, 0.6);
        add_note(&mut mix, top, bar_at, 8 * EIGHTH, 640, 0.35);
        for (i, &k) in PATTERN.iter().enumerate() {
            add_note(&mut mix, arp[k], bar_at + i * EIGHTH, 3 * EIGHTH, 160, 1.0);
        }
    }
    let peak = mix.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    mix.iter().map(|x| (x * TUNE_PEAK / peak).round() as i16).collect()
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

/// G.711 µ-law encoding of a 16-bit sample (bias 0x84, clip 32635).
pub fn ulaw_encode(s: i16) -> u8 {
    let s = i32::from(s);
    let (sign, mag) = if s < 0 { (0x80, -s) } else { (0, s) };
    let mag = mag.min(ULAW_CLIP) + ULAW_BIAS; // 132..=32767: highest bit 7..=14
    let exponent = 24 - mag.leading_zeros() as i32; // (31 - lz) - 7
    let mantissa = (mag >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// G.711 µ-law decoding to a 16-bit sample (0x7F and 0xFF both give 0).
pub fn ulaw_decode(b: u8) -> i16 {
    let b = !b;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0F);
    let mag = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    (if b & 0x80 != 0 { -mag } else { mag }) as i16
}

/// G.711 A-law encoding of a 16-bit sample (13-bit segments, even bits inverted by XOR 0x55).
pub fn alaw_encode(s: i16) -> u8 {
    let v = i32::from(s) >> 3;
    let (mask, mag) = if v >= 0 { (0xD5, v) } else { (0x55, -v - 1) }; // mag 0..=4095
    let seg = if mag < 32 { 0 } else { 27 - mag.leading_zeros() as i32 }; // (31 - lz) - 4
    let mantissa = (mag >> seg.max(1)) & 0x0F;
    ((seg << 4) | mantissa) as u8 ^ mask
}

/// G.711 A-law decoding to a 16-bit sample (the middle of the step).
pub fn alaw_decode(b: u8) -> i16 {
    let a = b ^ 0x55;
    let mantissa = i32::from(a & 0x0F) << 4;
    let mag = match (a >> 4) & 0x07 {
        0 => mantissa + 8,
        seg => (mantissa + 0x108) << (seg - 1),
    };
    (if a & 0x80 != 0 { mag } else { -mag }) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One RIFF chunk, padded to an even length.
    fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut c = [id.as_slice(), &(body.len() as u32).to_le_bytes(), body].concat();
        c.resize(c.len() + body.len() % 2, 0);
        c
    }

    /// A RIFF/WAVE file of these chunks.
    fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body = chunks.concat();
        [b"RIFF".as_slice(), &(body.len() as u32 + 4).to_le_bytes(), b"WAVE", &body].concat()
    }

    /// A 16-byte fmt body.
    fn fmt(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let align = channels * bits / 8;
        let mut f = [tag.to_le_bytes(), channels.to_le_bytes()].concat();
        f.extend([rate.to_le_bytes(), (rate * u32::from(align)).to_le_bytes()].concat());
        f.extend([align.to_le_bytes(), bits.to_le_bytes()].concat());
        f
    }

    /// A 40-byte WAVE_FORMAT_EXTENSIBLE fmt body whose SubFormat is `sub`.
    fn extensible(sub: u16, bits: u16) -> Vec<u8> {
        let mut f = fmt(0xFFFE, 1, 8000, bits);
        f.extend([22u16.to_le_bytes(), bits.to_le_bytes()].concat());
        f.extend(4u32.to_le_bytes()); // front centre
        f.extend(sub.to_le_bytes());
        f.extend(GUID_TAIL);
        f
    }

    fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn ramp(n: usize) -> Vec<i16> {
        (0..n).map(|i| ((i * 397) % 65536) as u16 as i16).collect()
    }

    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        riff(&[chunk(b"fmt ", &fmt(tag, channels, rate, bits)), chunk(b"data", data)])
    }

    fn load(bytes: &[u8]) -> Audio {
        Audio::from_wav(bytes).unwrap_or_else(|e| panic!("WAV refused: {e}"))
    }

    #[test]
    fn g711_known_vectors() {
        // (sample, µ-law, A-law), from the segment tables of G.711.
        for (s, u, a) in [(0, 0xFF, 0xD5), (-1, 0x7F, 0x55), (8, 0xFE, 0xD5), (32767, 0x80, 0xAA), (-32768, 0x00, 0x2A)]
        {
            assert_eq!((ulaw_encode(s), alaw_encode(s)), (u, a), "sample {s}");
        }
        let ulaw =
            [(0x00, -32124), (0x80, 32124), (0xFF, 0), (0x7F, 0), (0xFE, 8), (0x7E, -8), (0xEF, 132), (0x8F, 16764)];
        for (b, s) in ulaw {
            assert_eq!(ulaw_decode(b), s, "µ-law {b:#04x}");
        }
        let alaw = [(0xD5, 8), (0x55, -8), (0x2A, -32256), (0xAA, 32256), (0xD4, 24), (0xC5, 264), (0xF5, 528)];
        for (b, s) in alaw {
            assert_eq!(alaw_decode(b), s, "A-law {b:#04x}");
        }
    }

    #[test]
    fn g711_round_trips_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(b)), b, "A-law {b:#04x}");
            // µ-law has two zeros, 0xFF (+0) and 0x7F (−0); both decode to 0, which encodes to +0.
            let want = if b == 0x7F { 0xFF } else { b };
            assert_eq!(ulaw_encode(ulaw_decode(b)), want, "µ-law {b:#04x}");
        }
    }

    #[test]
    fn g711_is_monotonic_and_close() {
        let (mut last_u, mut last_a) = (i16::MIN, i16::MIN);
        for s in i16::MIN..=i16::MAX {
            let (u, a) = (ulaw_decode(ulaw_encode(s)), alaw_decode(alaw_encode(s)));
            assert!(u >= last_u && a >= last_a, "not monotonic at {s}");
            let bound = i32::from(s).abs() / 32 + 16;
            assert!((i32::from(u) - i32::from(s)).abs() <= bound, "µ-law {s} -> {u}");
            assert!((i32::from(a) - i32::from(s)).abs() <= bound, "A-law {s} -> {a}");
            (last_u, last_a) = (u, a);
        }
    }

    #[test]
    fn wav_pcm16_is_encoded_in_both_codecs() {
        let samples = ramp(1000);
        let audio = load(&wav(1, 1, 8000, 16, &pcm_bytes(&samples)));
        assert_eq!(audio.len(), 1000);
        assert_eq!(audio, Audio::from_pcm(&samples).unwrap());
        let u: Vec<u8> = samples.iter().map(|&s| ulaw_encode(s)).collect();
        let a: Vec<u8> = samples.iter().map(|&s| alaw_encode(s)).collect();
        assert_eq!((audio.encoded(Codec::Pcmu), audio.encoded(Codec::Pcma)), (u.as_slice(), a.as_slice()));
    }

    #[test]
    fn wav_g711_keeps_its_own_bytes_exactly() {
        let all: Vec<u8> = (0..=255).collect();
        let ulaw = load(&wav(7, 1, 8000, 8, &all));
        assert_eq!(ulaw.encoded(Codec::Pcmu), all.as_slice());
        let a: Vec<u8> = all.iter().map(|&b| alaw_encode(ulaw_decode(b))).collect();
        assert_eq!(ulaw.encoded(Codec::Pcma), a.as_slice());
        let alaw = load(&wav(6, 1, 8000, 8, &all));
        assert_eq!(alaw.encoded(Codec::Pcma), all.as_slice());
        let u: Vec<u8> = all.iter().map(|&b| ulaw_encode(alaw_decode(b))).collect();
        assert_eq!(alaw.encoded(Codec::Pcmu), u.as_slice());
    }

    #[test]
    fn wav_extensible_reads_its_subformat() {
        let samples = ramp(400);
        let pcm = riff(&[chunk(b"fmt ", &extensible(1, 16)), chunk(b"data", &pcm_bytes(&samples))]);
        assert_eq!(load(&pcm), Audio::from_pcm(&samples).unwrap());
        let all: Vec<u8> = (0..=255).collect();
        let ulaw = riff(&[chunk(b"fmt ", &extensible(7, 8)), chunk(b"data", &all)]);
        assert_eq!(load(&ulaw).encoded(Codec::Pcmu), all.as_slice());
    }

    #[test]
    fn wav_skips_unknown_chunks_and_their_pad_byte() {
        let samples = ramp(300);
        let want = Audio::from_pcm(&samples).unwrap();
        let (f, d) = (chunk(b"fmt ", &fmt(1, 1, 8000, 16)), chunk(b"data", &pcm_bytes(&samples)));
        let list = chunk(b"LIST", b"INFOINAM\x05\0\0\0tune\0"); // 17 bytes: padded to 18
        let fact = chunk(b"fact", &300u32.to_le_bytes());
        assert_eq!(load(&riff(&[f.clone(), list.clone(), fact.clone(), d.clone()])), want);
        assert_eq!(load(&riff(&[list.clone(), d.clone(), fact, f.clone()])), want, "fmt after data");
        assert_eq!(load(&riff(&[f.clone(), d.clone(), list])), want, "LIST at the end");
        // An odd-sized data chunk of 16-bit samples: the odd byte and its pad are skipped, fmt follows.
        let mut odd = pcm_bytes(&samples);
        odd.push(0x7F);
        assert_eq!(load(&riff(&[chunk(b"data", &odd), f])), want);
    }

    #[test]
    fn wav_data_running_past_the_end_takes_what_is_there() {
        let samples = ramp(500);
        let want = Audio::from_pcm(&samples).unwrap();
        for stated in [0u32, u32::MAX, 2000, 1001] {
            let mut w = riff(&[chunk(b"fmt ", &fmt(1, 1, 8000, 16))]);
            w.extend(b"data");
            w.extend(stated.to_le_bytes());
            w.extend(pcm_bytes(&samples));
            assert_eq!(load(&w), want, "data size {stated:#x}");
            w.push(0x55); // an odd trailing byte of 16-bit data
            assert_eq!(load(&w), want, "data size {stated:#x} and an odd byte");
        }
    }

    #[test]
    fn wav_errors_name_the_problem() {
        use AudioError::*;
        let pcm = pcm_bytes(&ramp(200));
        let g711 = vec![0xD5; 200];
        let f = chunk(b"fmt ", &fmt(1, 1, 8000, 16));
        let mut cut_fmt = riff(std::slice::from_ref(&f));
        cut_fmt.truncate(cut_fmt.len() - 6);
        let mut cut_head = riff(&[chunk(b"LIST", b"INFO")]);
        cut_head.extend(b"fmt ");
        let mut bad_guid = extensible(1, 16);
        bad_guid[39] ^= 1;
        let cases: Vec<(&str, Vec<u8>, AudioError)> = vec![
            ("empty", vec![], NotWav),
            ("RIFX", [b"RIFX".as_slice(), &wav(1, 1, 8000, 16, &pcm)[4..]].concat(), NotWav),
            ("AVI", [&wav(1, 1, 8000, 16, &pcm)[..8], b"AVI "].concat(), NotWav),
            ("44.1 kHz", wav(1, 1, 44100, 16, &pcm), SampleRate(44100)),
            ("stereo", wav(1, 2, 8000, 16, &pcm), Channels(2)),
            ("8-bit", wav(1, 1, 8000, 8, &pcm), PcmBits(8)),
            ("24-bit", wav(1, 1, 8000, 24, &pcm), PcmBits(24)),
            ("float", wav(3, 1, 8000, 32, &pcm), Format(3)),
            ("16-bit µ-law", wav(7, 1, 8000, 16, &g711), G711Bits(16)),
            ("ext float", riff(&[chunk(b"fmt ", &extensible(3, 32)), chunk(b"data", &pcm)]), Format(3)),
            ("ext guid", riff(&[chunk(b"fmt ", &bad_guid), chunk(b"data", &pcm)]), SubFormatGuid),
            (
                "ext short",
                riff(&[chunk(b"fmt ", &extensible(1, 16)[..18]), chunk(b"data", &pcm)]),
                FmtTooShort { size: 18, need: 40 },
            ),
            ("fmt 14", riff(&[chunk(b"fmt ", &fmt(1, 1, 8000, 16)[..14])]), FmtTooShort { size: 14, need: 16 }),
            ("cut fmt", cut_fmt, TruncatedChunk { id: *b"fmt ", stated: 16, left: 10 }),
            ("cut header", cut_head, TruncatedChunkHeader { at: 24 }),
            ("no data", riff(&[f.clone(), chunk(b"LIST", b"INFO")]), NoData),
            ("no fmt", riff(&[chunk(b"data", &pcm)]), NoFmt),
            ("too short", wav(1, 1, 8000, 16, &pcm[..318]), TooShort(159)),
            ("too short G.711", wav(6, 1, 8000, 8, &g711[..100]), TooShort(100)),
            ("too long", wav(7, 1, 8000, 8, &vec![0xFF; MAX_SAMPLES + 1]), TooLong(MAX_SAMPLES + 1)),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(Audio::from_wav(&bytes), Err(want), "{name}");
        }
    }

    #[test]
    fn error_messages_speak_to_an_operator() {
        let msg = |e: AudioError| e.to_string();
        assert_eq!(msg(AudioError::Format(3)), "format tag 3 (IEEE float): needs PCM 16-bit, µ-law or A-law");
        assert_eq!(msg(AudioError::SampleRate(44100)), "sample rate 44100 Hz: music on hold needs 8000 Hz");
        assert_eq!(msg(AudioError::Channels(2)), "2 channels: music on hold needs mono");
        assert_eq!(msg(AudioError::PcmBits(8)), "8-bit PCM: needs 16-bit");
        let cut = AudioError::TruncatedChunk { id: *b"fmt ", stated: 16, left: 10 };
        assert_eq!(msg(cut), "truncated WAV file: the \"fmt \" chunk states 16 bytes, only 10 are left");
        assert_eq!(
            msg(AudioError::TooLong(MAX_SAMPLES + 1)),
            "too long: 4800001 samples (600 s), at most 10 minutes (4800000 samples)"
        );
    }

    #[test]
    fn pcm_length_limits() {
        assert_eq!(Audio::from_pcm(&[0; MIN_SAMPLES - 1]), Err(AudioError::TooShort(MIN_SAMPLES - 1)));
        assert_eq!(Audio::from_pcm(&[0; MIN_SAMPLES]).map(|a| a.len()), Ok(MIN_SAMPLES));
        assert_eq!(Audio::from_pcm(&vec![0; MAX_SAMPLES + 1]), Err(AudioError::TooLong(MAX_SAMPLES + 1)));
        assert_eq!(Audio::from_pcm(&vec![0; MAX_SAMPLES]).map(|a| a.len()), Ok(MAX_SAMPLES));
    }

    #[test]
    fn fill_wraps_and_takes_at_modulo_the_loop() {
        let samples = ramp(200);
        let audio = Audio::from_pcm(&samples).unwrap();
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let src = audio.encoded(codec);
            let want = |at: usize, n: usize| -> Vec<u8> { (at..at + n).map(|i| src[i % 200]).collect() };
            for (at, n) in [(0, 160), (150, 160), (199, 1), (200, 160), (1_000_030, 160), (usize::MAX, 160), (7, 1000)]
            {
                let mut out = vec![0; n];
                audio.fill(codec, at, &mut out);
                assert_eq!(out, want(at % 200, n), "{codec:?} at {at}, {n} samples");
            }
            audio.fill(codec, 5, &mut []);
        }
    }

    #[test]
    fn sin_matches_std() {
        for i in -20_000..20_000 {
            let turns = f64::from(i) * 0.000_731;
            let err = (sin_turns(turns) - (turns * std::f64::consts::TAU).sin()).abs();
            assert!(err < 1e-7, "sin at {turns} turns off by {err}");
        }
    }

    #[test]
    fn tune_is_deterministic_and_the_right_length() {
        let tune = Audio::tune();
        assert_eq!(tune, Audio::tune());
        assert!((8 * 8000..=16 * 8000).contains(&tune.len()), "{} samples", tune.len());
        let pcm = tune_samples();
        assert_eq!(tune, Audio::from_pcm(&pcm).unwrap());
    }

    /// The tune as heard: its µ-law bytes decoded.
    fn decoded_tune() -> Vec<f64> {
        Audio::tune().encoded(Codec::Pcmu).iter().map(|&b| f64::from(ulaw_decode(b))).collect()
    }

    #[test]
    fn tune_level_is_gentle_but_audible() {
        let x = decoded_tune();
        let peak = x.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        let rms = (x.iter().map(|s| s * s).sum::<f64>() / x.len() as f64).sqrt();
        let dbfs = |v: f64| 20.0 * (v / 32768.0).log10();
        assert!((-14.0..-6.0).contains(&dbfs(peak)), "peak {:.1} dBFS", dbfs(peak));
        assert!(dbfs(rms) > -30.0, "rms {:.1} dBFS: nearly silent", dbfs(rms));
        // Every second of the loop has something in it, apart from the ring-out at the end.
        for (i, sec) in x.chunks(8000).take(13).enumerate() {
            let sec_peak = sec.iter().fold(0.0f64, |m, s| m.max(s.abs()));
            assert!(sec_peak > peak / 8.0, "second {i}: peak {sec_peak}");
        }
    }

    #[test]
    fn tune_loops_seamlessly_without_clicks() {
        let x = decoded_tune();
        let peak = x.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        for (name, edge) in [("first", &x[..80]), ("last", &x[x.len() - 80..])] {
            assert!(edge.iter().all(|s| s.abs() <= peak / 1000.0), "{name} 10 ms not silent: {edge:?}");
        }
        // No clicks, across the loop point too (indices wrap). The largest step from one sample to
        // the next is what the notes' pitch gives (0.34 of the peak); a note starting at full
        // level mid-wave would make it 0.6. The third difference, a steep high-pass, shows a note
        // starting with a kink even at a zero crossing: 0.11 of the peak here, 0.4 with a hard
        // onset at a zero crossing, 1.15 mid-wave. Measured on the PCM, before µ-law's noise.
        let step = (0..x.len()).map(|i| (x[(i + 1) % x.len()] - x[i]).abs()).fold(0.0, f64::max);
        assert!(step < 0.45 * peak, "a step of {step} against a peak of {peak}");
        let p: Vec<f64> = tune_samples().into_iter().map(f64::from).collect();
        let at = |i: usize| p[i % p.len()];
        let d3 = (0..p.len()).map(|i| (at(i + 3) - 3.0 * at(i + 2) + 3.0 * at(i + 1) - at(i)).abs());
        let d3 = d3.fold(0.0, f64::max);
        assert!(d3 < 0.2 * peak, "a third difference of {d3} against a peak of {peak}");
    }
}
