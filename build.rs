//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds `migrations/` at
//! compile time, and on stable Rust cargo does not know that the macro read that folder, so
//! a new `migrations/*/NNNN_*.sql` would otherwise be missing from the binary until some
//! Rust file changed (sqlx's documented fix).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
