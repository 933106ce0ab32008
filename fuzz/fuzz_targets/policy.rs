#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qga_warden_tests::fuzz::policy_decision(data));
