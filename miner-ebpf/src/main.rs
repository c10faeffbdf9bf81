//! minerwatch's kernel side: one thin program per hook, the maps they share,
//! and nothing that decides policy. See miner-ebpf-common for the ABI.
#![no_std]
#![no_main]

mod connect;
mod cpu_iter;
mod exec;
mod exit;
mod fork;
mod fpu;
mod hints;
mod listen;
mod maps;
mod pending;
mod stratum_peek;
mod task;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
