#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpd_core::fuzz_checks::config(data));
