//! Writes the built-in seeds of every fuzz target to fuzz/corpus/TARGET/
//! (`cargo run -p qga-warden-tests --bin fuzz-seeds`), for libFuzzer runs.

use qga_warden_tests::fuzz::{TARGETS, seeds};

fn main() -> std::io::Result<()> {
    for (name, _) in TARGETS {
        let dir = qga_warden_tests::workspace().join("fuzz/corpus").join(name);
        std::fs::create_dir_all(&dir)?;
        for (i, seed) in seeds(name).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), seed)?;
        }
    }
    Ok(())
}
