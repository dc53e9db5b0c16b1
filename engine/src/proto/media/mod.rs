//! Music on hold: the RTP streams a shard sends its parked calls
//! (docs/decisions/0023-music-on-hold.md).
//!
//! * [`audio`]: the music, decoded once and encoded into G.711 frames that
//!   every stream of a tenant reads;
//! * [`rtp`]: the RTP header (RFC 3550);
//! * [`streams`]: a shard's streams, their pacing wheel and the latching
//!   of each stream to the address its phone really sends from.
//!
//! Sans-IO like the rest of [`crate::proto`]: packets come out through
//! [`streams::Streams::poll`], received media comes in as slices.

pub mod audio;
pub mod rtp;
pub mod streams;
