//! `sqlx::migrate!` embeds `migrations/` at compile time, but on stable Rust
//! it can watch only the files that existed when it ran: a new migration
//! alone would not rebuild the crate, and the binary would run an old
//! schema. Watching the folder here makes Cargo notice one (sqlx's own
//! advice, `sqlx migrate build-script`).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
