//! Kernel structure offsets, read by the loader from the running kernel's BTF
//! and handed to the programs as a global.
//!
//! aya has no CO-RE field relocation for Rust programs, and hard-coded
//! offsets break on the next kernel, so the loader reads these from
//! `/sys/kernel/btf/vmlinux` at start. A zero `valid` tells the programs to
//! skip the reads and flag the exec as `EXEC_FLAG_EXE_UNKNOWN`.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub valid: u32,
    pub task_mm: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_start_boottime: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub signal_live: u32,
    pub mm_exe_file: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub file_f_inode: u32,
    pub file_f_path: u32,
    pub path_dentry: u32,
    pub dentry_d_name: u32,
    pub qstr_name: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub inode_i_nlink: u32,
    pub sb_s_dev: u32,
    /// How to reach the saved MXCSR from a `struct fpu *`: one of
    /// `FPU_LAYOUT_*`. Kept apart from `valid`: a kernel whose FPU layout we
    /// do not know still gets every other sensor.
    pub fpu_layout: u32,
    /// `fpu.fpstate` (a pointer) for `FPU_LAYOUT_FPSTATE`; unused otherwise.
    pub fpu_fpstate: u32,
    /// Offset of the saved MXCSR from the `struct fpstate` (FPSTATE) or from
    /// the `struct fpu` (EMBEDDED): `regs.xsave.i387.mxcsr` /
    /// `state.xsave.i387.mxcsr`.
    pub fpu_mxcsr: u32,
    /// `task_struct.pid` (the thread id).
    pub task_pid: u32,
    /// `task_struct.se.sum_exec_runtime`: the scheduler's own on-CPU ns of
    /// the thread, updated at every tick and switch.
    pub task_sum_exec_runtime: u32,
    /// `signal_struct.sum_sched_runtime`: on-CPU ns of the process's
    /// threads that already exited.
    pub signal_sum_sched_runtime: u32,
    /// `signal_struct.nr_threads`: threads not yet folded into
    /// `sum_sched_runtime` (still on `thread_head`).
    pub signal_nr_threads: u32,
    /// `signal_struct.thread_head` and `task_struct.thread_node`: the list
    /// of those threads. 0 when the kernel's BTF lacks them: the exit total
    /// then misses threads still exiting beside the last.
    pub signal_thread_head: u32,
    pub task_thread_node: u32,
}
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 116);

/// The FPU layout is unknown: the fpu program does nothing.
pub const FPU_LAYOUT_UNKNOWN: u32 = 0;
/// Linux 5.16+: `struct fpu` points to a `struct fpstate` holding `regs`.
pub const FPU_LAYOUT_FPSTATE: u32 = 1;
/// Before 5.16: `struct fpu` embeds `union fpregs_state state`.
pub const FPU_LAYOUT_EMBEDDED: u32 = 2;

impl KernelOffsets {
    pub const fn zeroed() -> Self {
        KernelOffsets {
            valid: 0,
            task_mm: 0,
            task_real_parent: 0,
            task_tgid: 0,
            task_start_boottime: 0,
            task_exit_code: 0,
            task_signal: 0,
            signal_live: 0,
            mm_exe_file: 0,
            mm_arg_start: 0,
            mm_arg_end: 0,
            file_f_inode: 0,
            file_f_path: 0,
            path_dentry: 0,
            dentry_d_name: 0,
            qstr_name: 0,
            inode_i_ino: 0,
            inode_i_sb: 0,
            inode_i_nlink: 0,
            sb_s_dev: 0,
            fpu_layout: FPU_LAYOUT_UNKNOWN,
            fpu_fpstate: 0,
            fpu_mxcsr: 0,
            task_pid: 0,
            task_sum_exec_runtime: 0,
            signal_sum_sched_runtime: 0,
            signal_nr_threads: 0,
            signal_thread_head: 0,
            task_thread_node: 0,
        }
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for KernelOffsets {}

/// Offsets into `struct sock_common` (at the start of every `struct sock`)
/// for the listen hook, read from BTF like [`KernelOffsets`] and kept
/// apart from them so the hook can degrade alone. A zero `valid` makes the
/// hook send its records with `LISTEN_FLAG_ADDR_UNKNOWN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOffsets {
    pub valid: u32,
    pub skc_family: u32,
    /// `skc_num`: the local port in host order.
    pub skc_num: u32,
    pub skc_rcv_saddr: u32,
    pub skc_v6_rcv_saddr: u32,
    /// Non-zero when the fd path below is known: `listen(2)`'s fd to its
    /// `struct sock`, for the `sys_enter_listen` fallback (`task->files->fdt
    /// ->fd[fd]->private_data` is the `struct socket` when its `file` points
    /// back). Kept apart from `valid`: without it the fentry hook or the
    /// state-change fallback still see listens.
    pub fd_valid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_private_data: u32,
    pub socket_type: u32,
    pub socket_file: u32,
    pub socket_sk: u32,
}
const _: () = assert!(core::mem::size_of::<SockOffsets>() == 56);

impl SockOffsets {
    pub const fn zeroed() -> Self {
        SockOffsets {
            valid: 0,
            skc_family: 0,
            skc_num: 0,
            skc_rcv_saddr: 0,
            skc_v6_rcv_saddr: 0,
            fd_valid: 0,
            task_files: 0,
            files_fdt: 0,
            fdt_max_fds: 0,
            fdt_fd: 0,
            file_private_data: 0,
            socket_type: 0,
            socket_file: 0,
            socket_sk: 0,
        }
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for SockOffsets {}
