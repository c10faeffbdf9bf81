//! Developer tasks: `cargo xtask setup|build|run|test|e2e|bench|image|kernels`.
//! One module per subcommand; each build-ish command runs setup first so a
//! fresh machine needs nothing but this repository and rustup.

mod bench;
mod build;
mod fixtures;
mod image;
mod kernels;
mod run;
mod setup;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "minerwatch developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: pinned eBPF toolchain + rust-src, bpf-linker, tracefs.
    Setup,
    /// Build the eBPF object and the minerwatch binary.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build, then run `minerwatch run` (or the given minerwatch arguments).
    ///
    /// Example: cargo xtask run
    /// Example: cargo xtask run -- run --enforce --config my.toml
    Run {
        #[arg(long)]
        release: bool,
        /// Arguments for minerwatch; default: `run --print-events`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build, then run every test: unit, integration (root + eBPF), end to end.
    ///
    /// Example: cargo xtask test --no-skips
    Test {
        /// Fail on any skip whose need (root, BTF, dpkg, python3, a port,
        /// XMRig, the Helm SDK) this machine has: what CI runs. Also
        /// MINERWATCH_NO_SKIPS=1.
        #[arg(long)]
        no_skips: bool,
    },
    /// Run only the end-to-end detection scenarios and print their table.
    E2e,
    /// Measure overhead, storms, idle cost and detection latency; print a markdown table.
    Bench {
        /// Shorter runs (for a quick look; the README quotes full runs).
        #[arg(long)]
        quick: bool,
        /// Only one group of rows, for a quick look at one cost: `idle`,
        /// `switch` (context switches and the fpu hook), `network` (bulk
        /// transfer) or `storms` (exec, fork, connect).
        #[arg(long, value_enum)]
        only: Option<bench::Only>,
        /// Another minerwatch binary (an earlier build) to run the storms
        /// beside this one, pair by pair: a before/after in one run.
        #[arg(long)]
        baseline: Option<std::path::PathBuf>,
    },
    /// Build the agent image with podman from deploy/Dockerfile, offline
    /// (installs podman when missing; base image from a local debootstrap).
    Image,
    /// Boot Debian kernels under qemu and run the sensor smoke test in each;
    /// print the matrix (kernel packages downloaded once, never installed).
    ///
    /// Example: cargo xtask kernels
    /// Example: cargo xtask kernels --only 5.10,7.2
    Kernels {
        /// Comma-separated kernel series to run (default: all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Only download and unpack the kernels (no boot).
        #[arg(long)]
        prepare_only: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup => setup::setup(),
        Cmd::Build { release } => {
            setup::setup()?;
            build::build(release)
        }
        Cmd::Run { release, args } => {
            setup::setup()?;
            build::build(release)?;
            run::run(release, args)
        }
        Cmd::Test { no_skips } => {
            setup::setup()?;
            test::test(no_skips)
        }
        Cmd::E2e => {
            setup::setup()?;
            test::e2e()
        }
        Cmd::Bench {
            quick,
            only,
            baseline,
        } => {
            setup::setup()?;
            bench::bench(quick, only, baseline.as_deref())
        }
        Cmd::Image => {
            setup::setup()?;
            image::image()
        }
        Cmd::Kernels { only, prepare_only } => {
            if prepare_only {
                return kernels::prepare(&only).map(|_| ());
            }
            setup::setup()?;
            kernels::kernels(&only)
        }
    }
}
