#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcpd_daemon::fuzzing::front_routing(data));
