// The course content is embedded into the binary: rebuild whenever any of it changes.
fn main() {
    println!("cargo:rerun-if-changed=.");
}
