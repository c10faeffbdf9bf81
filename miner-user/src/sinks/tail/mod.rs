//! The live stream behind `minerwatch tail`: events, alerts and actions as
//! JSON lines on a root-only unix socket.
//!
//! Three jobs, three files: [`message`] turns events, alerts and actions
//! into stream lines (the wire format and its human summaries), [`hub`]
//! fans each line out to the clients without ever waiting for one, and
//! [`server`] owns the socket: binding, access control, admission.
//!
//! The daemon never waits for a tail client. `publish` serialises a message
//! once and offers it to each client's bounded queue; a full queue drops the
//! message for that client and counts it, and the client is told how many it
//! missed (`{"kind":"skipped","count":N}`) exactly where the gap is. A client
//! whose socket takes nothing for `stall_timeout_ms` is disconnected (as
//! tetragon drops a slow listener rather than waiting on it).
//!
//! Access control is two layers: the socket lives in a 0700 directory with
//! mode 0600, and every accepted peer's SO_PEERCRED uid must be 0, because
//! the stream carries every command line on the host.

pub mod hub;
pub mod message;
pub mod server;

pub use hub::TailHub;
pub use message::{TailKind, TailMessage};
pub use server::{PERMISSION_DENIED, TailError, TailServer};

#[cfg(test)]
mod tests;
