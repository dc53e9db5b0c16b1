//! The wire: parsing and writing SIP messages, SDP, stream framing, and the
//! addresses messages travel between. Nothing here keeps state across
//! messages.

pub mod find;
pub mod parse;
pub mod peer;
pub mod sdp;
pub mod stream;
pub mod write;

pub use peer::{Peer, Transport};
