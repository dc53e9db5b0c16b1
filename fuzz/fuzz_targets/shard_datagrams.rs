#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sipark_fuzz::shard_datagrams(data));
