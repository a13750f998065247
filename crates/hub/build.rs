//! Rebuild the hub when the portal's built assets change (files added to `web/dist` are not
//! seen by `include_bytes!` alone).
fn main() {
    println!("cargo:rerun-if-changed=../../web/dist");
}
