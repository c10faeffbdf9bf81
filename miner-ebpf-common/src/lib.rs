//! The kernel/user ABI of minerwatch, and nothing else.
//!
//! Every type here crosses the ring buffer or a map as raw bytes, so each is
//! `#[repr(C)]`, has explicit padding and a size fixed by a compile-time
//! assertion. Kinds and sites cross as plain integers and are converted with
//! `TryFrom`, never transmuted: an unknown value from a newer kernel object
//! must be an error, not undefined behaviour.
#![no_std]

pub mod maps;
pub mod offsets;
pub mod records;

pub use maps::*;
pub use offsets::{
    FPU_LAYOUT_EMBEDDED, FPU_LAYOUT_FPSTATE, FPU_LAYOUT_UNKNOWN, KernelOffsets, SockOffsets,
};
pub use records::*;

/// Bumped on every change of a record or map layout. The eBPF object exports
/// it as a global; the loader refuses an object built for another version.
pub const ABI_VERSION: u32 = 3;
