//! Rebuild the object when bpf-linker changes: cargo does not track the
//! linker binary, and an object linked by a stale linker fails at load time
//! with an opaque BTF error.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
}
