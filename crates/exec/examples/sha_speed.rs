//! SHA-256 throughput of the hash the pump uses.
use sha2::{Digest, Sha256};
fn main() {
    let buf = vec![7u8; 1 << 20];
    let t = std::time::Instant::now();
    let mut h = Sha256::new();
    for _ in 0..1024 {
        h.update(&buf);
    }
    let d = h.finalize();
    println!("{:.0} MiB/s {:x}", 1024.0 / t.elapsed().as_secs_f64(), d[0]);
}
