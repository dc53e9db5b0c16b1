//! The music: WAV input, G.711 encoding and sipark's own tune.
