//! `sqlx::migrate!` embeds `migrations/` when `src/db/mod.rs` is compiled, but cargo does not
//! know the macro read that folder: a new migration alone did not rebuild the crate, and the
//! binary ran without it. This makes a change there rebuild (as sqlx's documentation advises).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
