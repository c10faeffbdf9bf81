//! A minimal reader of the kernel's BTF: just enough to find the byte offset
//! of a (possibly nested, possibly anonymous) struct member.
//!
//! aya has no CO-RE field relocation for Rust programs and aya-obj keeps its
//! BTF member access private, so the loader reads the offsets the programs
//! need here and passes them as a global (`KernelOffsets`). A hand-written
//! reader parses vmlinux's ~6 MB in tens of milliseconds; btf-rs took ~380 ms
//! for the same answer (see ../shared/TOOLCHAIN.md).

use std::collections::HashMap;

use miner_ebpf_common::{FPU_LAYOUT_EMBEDDED, FPU_LAYOUT_FPSTATE, KernelOffsets, SockOffsets};

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "reading {path} failed: {source}; this kernel has no BTF (CONFIG_DEBUG_INFO_BTF=y is required, Linux 5.4+)"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("BTF struct `{strukt}` has no member `{member}`")]
    NoMember { strukt: String, member: String },
    #[error(
        "kernel {release}: `struct fpu` has neither `fpstate` (5.16+) nor `state` (older); the RandomX fingerprint is off on this kernel"
    )]
    FpuLayout { release: String },
}

const MAGIC: u16 = 0xeb9f;

// BTF kinds (uapi/linux/btf.h).
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug)]
struct Type {
    name: u32,
    kind: u32,
    /// For modifiers and typedefs: the referenced type.
    ty: u32,
    members: Vec<Member>,
}

pub struct Btf {
    types: Vec<Type>, // index = type id; 0 is void
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, BtfError> {
    b.get(off..off + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(BtfError::Malformed("truncated"))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    pub fn from_file(path: &str) -> Result<Btf, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.into(),
            source,
        })?;
        Btf::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        if u16_at(data, 0)? != MAGIC {
            return Err(BtfError::Malformed(
                "bad magic (big-endian BTF is not supported)",
            ));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_raw = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();

        let mut types = vec![Type {
            name: 0,
            kind: 0,
            ty: 0,
            members: Vec::new(),
        }];
        let mut off = 0;
        while off < types_raw.len() {
            let name = u32_at(types_raw, off)?;
            let info = u32_at(types_raw, off + 4)?;
            let size_or_type = u32_at(types_raw, off + 8)?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => off += 4,
                KIND_ARRAY => off += 12,
                KIND_STRUCT | KIND_UNION => {
                    members.reserve(vlen);
                    for i in 0..vlen {
                        let m = off + i * 12;
                        let raw = u32_at(types_raw, m + 8)?;
                        members.push(Member {
                            name: u32_at(types_raw, m)?,
                            ty: u32_at(types_raw, m + 4)?,
                            // With kind_flag the top 8 bits are a bitfield size.
                            bit_offset: if kind_flag { raw & 0x00ff_ffff } else { raw },
                        });
                    }
                    off += vlen * 12;
                }
                KIND_ENUM | KIND_FUNC_PROTO => off += vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => off += vlen * 12,
                _ => {} // PTR, FWD, TYPEDEF, modifiers, FUNC, FLOAT, TYPE_TAG: no tail
            }
            types.push(Type {
                name,
                kind,
                ty: size_or_type,
                members,
            });
        }

        let mut btf = Btf {
            types,
            strings,
            structs_by_name: HashMap::new(),
        };
        // Structs first: a union of the same name never shadows a struct.
        for kind in [KIND_STRUCT, KIND_UNION] {
            for (id, t) in btf.types.iter().enumerate() {
                if t.kind == kind && !t.members.is_empty() {
                    let name = btf.str(t.name).to_owned();
                    if !name.is_empty() {
                        btf.structs_by_name.entry(name).or_insert(id as u32);
                    }
                }
            }
        }
        Ok(btf)
    }

    fn str(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Follow typedefs and qualifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.ty
                }
                _ => break,
            }
        }
        id
    }

    /// Bit offset and type of `member` inside type `id`, descending into
    /// anonymous structs and unions (e.g. `mm_struct.exe_file`,
    /// `inode.__i_nlink`).
    fn find_member(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32)> {
        let t = self.types.get(id as usize)?;
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            let name = self.str(m.name);
            if name == member {
                return Some((m.bit_offset, m.ty));
            }
            if name.is_empty() {
                let inner = self.resolve(m.ty);
                let kind = self.types.get(inner as usize).map(|t| t.kind);
                if matches!(kind, Some(KIND_STRUCT | KIND_UNION))
                    && let Some((off, ty)) = self.find_member(inner, member, depth + 1)
                {
                    return Some((m.bit_offset + off, ty));
                }
            }
        }
        None
    }

    fn root(&self, strukt: &str) -> Result<u32, BtfError> {
        self.structs_by_name
            .get(strukt)
            .copied()
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))
    }

    /// Byte offset of `strukt.member` (a struct or union).
    pub fn offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        self.path_offset(strukt, &[member])
    }

    /// Byte offset of a chain of embedded members, `regs.xsave.i387.mxcsr`
    /// from `fpstate`: each step descends into the previous member's type
    /// (through typedefs and qualifiers, never through a pointer).
    pub fn path_offset(&self, strukt: &str, path: &[&str]) -> Result<u32, BtfError> {
        let mut id = self.root(strukt)?;
        let mut bits = 0;
        let mut at = strukt.to_owned();
        for member in path {
            let (off, ty) = self
                .find_member(id, member, 0)
                .ok_or_else(|| BtfError::NoMember {
                    strukt: at.clone(),
                    member: (*member).into(),
                })?;
            bits += off;
            id = self.resolve(ty);
            at = format!("{at}.{member}");
        }
        Ok(bits / 8)
    }

    /// Where the saved MXCSR of a `struct fpu` is: (`FPU_LAYOUT_*`, offset
    /// of the `fpstate` pointer, offset of MXCSR from its base). Linux 5.16
    /// moved the register image out of `struct fpu` into a `struct fpstate`
    /// it points to; before, `fpu.state` embedded it. Either way the XSAVE
    /// image starts with the legacy FXSAVE area, where MXCSR lives.
    pub fn fpu_offsets(&self, release: &str) -> Result<(u32, u32, u32), BtfError> {
        let layout = || BtfError::FpuLayout {
            release: release.to_owned(),
        };
        let in_regs = self
            .path_offset("fpregs_state", &["xsave", "i387", "mxcsr"])
            .map_err(|_| layout())?;
        if let Ok(fpstate) = self.offset("fpu", "fpstate") {
            let regs = self.offset("fpstate", "regs").map_err(|_| layout())?;
            return Ok((FPU_LAYOUT_FPSTATE, fpstate, regs + in_regs));
        }
        let state = self.offset("fpu", "state").map_err(|_| layout())?;
        Ok((FPU_LAYOUT_EMBEDDED, 0, state + in_regs))
    }

    /// Every offset the programs need.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        Ok(KernelOffsets {
            valid: 1,
            task_mm: self.offset("task_struct", "mm")?,
            task_real_parent: self.offset("task_struct", "real_parent")?,
            task_tgid: self.offset("task_struct", "tgid")?,
            task_start_boottime: self.offset("task_struct", "start_boottime")?,
            task_exit_code: self.offset("task_struct", "exit_code")?,
            task_signal: self.offset("task_struct", "signal")?,
            signal_live: self.offset("signal_struct", "live")?,
            mm_exe_file: self.offset("mm_struct", "exe_file")?,
            mm_arg_start: self.offset("mm_struct", "arg_start")?,
            mm_arg_end: self.offset("mm_struct", "arg_end")?,
            file_f_inode: self.offset("file", "f_inode")?,
            file_f_path: self.offset("file", "f_path")?,
            path_dentry: self.offset("path", "dentry")?,
            dentry_d_name: self.offset("dentry", "d_name")?,
            qstr_name: self.offset("qstr", "name")?,
            inode_i_ino: self.offset("inode", "i_ino")?,
            inode_i_sb: self.offset("inode", "i_sb")?,
            inode_i_nlink: self
                .offset("inode", "__i_nlink")
                .or_else(|_| self.offset("inode", "i_nlink"))?,
            sb_s_dev: self.offset("super_block", "s_dev")?,
            task_pid: self.offset("task_struct", "pid")?,
            task_sum_exec_runtime: self.offset("task_struct", "se")?
                + self.offset("sched_entity", "sum_exec_runtime")?,
            signal_sum_sched_runtime: self.offset("signal_struct", "sum_sched_runtime")?,
            // Optional: without them only the exit total's accuracy suffers.
            signal_nr_threads: self.offset("signal_struct", "nr_threads").unwrap_or(0),
            signal_thread_head: self.offset("signal_struct", "thread_head").unwrap_or(0),
            task_thread_node: self.offset("task_struct", "thread_node").unwrap_or(0),
            // Filled by `with_fpu` (optional: a kernel without a known FPU
            // layout keeps every other sensor).
            ..KernelOffsets::zeroed()
        })
    }

    /// Offsets of a `struct sock`'s local address for the listen hook
    /// (`__sk_common` leads `struct sock`, but the offset is read anyway).
    pub fn sock_offsets(&self) -> Result<SockOffsets, BtfError> {
        let base = self.offset("sock", "__sk_common")?;
        let common = |m: &str| self.offset("sock_common", m).map(|o| base + o);
        let o = SockOffsets {
            valid: 1,
            skc_family: common("skc_family")?,
            skc_num: common("skc_num")?,
            skc_rcv_saddr: common("skc_rcv_saddr")?,
            skc_v6_rcv_saddr: common("skc_v6_rcv_saddr")?,
            ..SockOffsets::zeroed()
        };
        Ok(match self.fd_offsets(o) {
            Ok(with_fd) => with_fd,
            Err(e) => {
                log::debug!("no fd-to-socket path for the listen syscall fallback: {e}");
                o
            }
        })
    }

    /// `o` with the path from a file descriptor to its `struct sock` (the
    /// `sys_enter_listen` fallback), or why the BTF lacks it.
    fn fd_offsets(&self, o: SockOffsets) -> Result<SockOffsets, BtfError> {
        Ok(SockOffsets {
            fd_valid: 1,
            task_files: self.offset("task_struct", "files")?,
            files_fdt: self.offset("files_struct", "fdt")?,
            fdt_max_fds: self.offset("fdtable", "max_fds")?,
            fdt_fd: self.offset("fdtable", "fd")?,
            file_private_data: self.offset("file", "private_data")?,
            socket_type: self.offset("socket", "type")?,
            socket_file: self.offset("socket", "file")?,
            socket_sk: self.offset("socket", "sk")?,
            ..o
        })
    }

    /// `o` with the FPU layout filled in, or why it cannot be (the caller
    /// warns and the fpu program stays idle).
    pub fn with_fpu(
        &self,
        mut o: KernelOffsets,
        release: &str,
    ) -> (KernelOffsets, Option<BtfError>) {
        match self.fpu_offsets(release) {
            Ok((layout, fpstate, mxcsr)) => {
                o.fpu_layout = layout;
                o.fpu_fpstate = fpstate;
                o.fpu_mxcsr = mxcsr;
                (o, None)
            }
            Err(e) => (o, Some(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny BTF blob: struct outer { int a; union { int b; int c; }; }.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0outer\0a\0b\0c\0".to_vec();
        // offsets: int=1 outer=5 a=11 b=13 c=15
        let mut types = Vec::new();
        let mut push = |v: u32| types.extend_from_slice(&v.to_le_bytes());
        // [1] int
        push(1);
        push(KIND_INT << 24);
        push(4);
        push(32);
        // [2] anonymous union { b; c } size 4
        push(0);
        push((KIND_UNION << 24) | 2);
        push(4);
        push(13);
        push(1);
        push(0);
        push(15);
        push(1);
        push(0);
        // [3] struct outer { a @0; anon @32 }
        push(5);
        push((KIND_STRUCT << 24) | 2);
        push(8);
        push(11);
        push(1);
        push(0);
        push(0);
        push(2);
        push(32);
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.push(1);
        out.push(0);
        out.extend_from_slice(&24u32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        out.extend_from_slice(&(types.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.offset("outer", "a").unwrap(), 0);
        assert_eq!(btf.offset("outer", "c").unwrap(), 4);
        assert!(matches!(
            btf.offset("outer", "zz"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.offset("inner", "a"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let b = blob();
        for n in 0..b.len() {
            let _ = Btf::parse(&b[..n]);
        }
        assert!(Btf::parse(b"garbage").is_err());
    }

    #[test]
    fn running_kernel_offsets_resolve() {
        let Ok(btf) = Btf::from_file(crate::defaults::BTF_PATH) else {
            crate::test_skip::skip(
                "sensor::btf::tests::running_kernel_offsets_resolve",
                "btf",
                "no /sys/kernel/btf/vmlinux on this kernel (CONFIG_DEBUG_INFO_BTF)",
            );
            return;
        };
        let o = btf.kernel_offsets().unwrap();
        assert_eq!(o.valid, 1);
        assert_eq!(o.qstr_name, 8, "qstr.name follows the 8-byte hash_len");
        assert!(o.task_mm > 0 && o.task_real_parent > 0 && o.mm_exe_file > 0);
        // sock_common's layout has been the same since Linux 4.x: the
        // addresses lead, then the ports, then the family.
        let s = btf.sock_offsets().unwrap();
        assert_eq!(
            (s.skc_rcv_saddr, s.skc_num, s.skc_family),
            (4, 14, 16),
            "{s:?}"
        );
        assert!(s.skc_v6_rcv_saddr >= 24, "{s:?}");
        let (o, err) = btf.with_fpu(o, "running");
        assert!(err.is_none(), "{err:?}");
        // The FXSAVE image keeps MXCSR at byte 24, on every kernel.
        let regs = btf.offset("fpstate", "regs").unwrap();
        assert_eq!(
            (o.fpu_layout, o.fpu_mxcsr),
            (FPU_LAYOUT_FPSTATE, regs + 24),
            "Linux 6.18 has fpu->fpstate"
        );
    }

    /// Builds BTF type sections for layout tests.
    #[derive(Default)]
    struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next: u32,
    }

    impl Builder {
        fn new() -> Self {
            Builder {
                strings: vec![0],
                next: 1,
                ..Default::default()
            }
        }
        fn name(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }
        fn push(&mut self, words: &[u32]) -> u32 {
            for w in words {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            self.next += 1;
            self.next - 1
        }
        fn int(&mut self, name: &str, size: u32) -> u32 {
            let n = self.name(name);
            self.push(&[n, KIND_INT << 24, size, size * 8])
        }
        fn ptr(&mut self, to: u32) -> u32 {
            self.push(&[0, 2 << 24, to])
        }
        fn agg(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            let n = self.name(name);
            let mut words = vec![n, (kind << 24) | members.len() as u32, size];
            for (m, ty, byte) in members {
                words.extend([self.name(m), *ty, byte * 8]);
            }
            self.push(&words)
        }
        fn finish(self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for v in [
                24,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// `fxregs_state`, `xregs_state` and `union fpregs_state` as every
    /// kernel since 4.x has them (the parts the path walks).
    fn fpregs_state(b: &mut Builder) -> u32 {
        let u16_ = b.int("u16", 2);
        let u32_ = b.int("u32", 4);
        let u64_ = b.int("u64", 8);
        let fx = b.agg(
            KIND_STRUCT,
            "fxregs_state",
            512,
            &[
                ("cwd", u16_, 0),
                ("swd", u16_, 2),
                ("twd", u16_, 4),
                ("fop", u16_, 6),
                ("", u64_, 8),
                ("mxcsr", u32_, 24),
                ("mxcsr_mask", u32_, 28),
            ],
        );
        let xs = b.agg(KIND_STRUCT, "xregs_state", 576, &[("i387", fx, 0)]);
        b.agg(
            KIND_UNION,
            "fpregs_state",
            4096,
            &[("fsave", u32_, 0), ("xsave", xs, 0)],
        )
    }

    #[test]
    fn fpu_layouts_before_and_after_5_16() {
        // Linux 5.10: struct fpu { last_cpu; avx512_timestamp; state }.
        let mut b = Builder::new();
        let regs = fpregs_state(&mut b);
        let u32_ = b.int("unsigned int", 4);
        b.agg(
            KIND_STRUCT,
            "fpu",
            4160,
            &[
                ("last_cpu", u32_, 0),
                ("avx512_timestamp", u32_, 8),
                ("state", regs, 64),
            ],
        );
        let old = Btf::parse(&b.finish()).unwrap();
        assert_eq!(
            old.fpu_offsets("5.10").unwrap(),
            (FPU_LAYOUT_EMBEDDED, 0, 88)
        );

        // Linux 5.16+: struct fpu { …; struct fpstate *fpstate; …;
        // struct fpstate __fpstate }, struct fpstate { …; regs @64 }.
        let mut b = Builder::new();
        let regs = fpregs_state(&mut b);
        let u32_ = b.int("unsigned int", 4);
        let fpstate = b.agg(
            KIND_STRUCT,
            "fpstate",
            4160,
            &[
                ("size", u32_, 0),
                ("user_size", u32_, 4),
                ("regs", regs, 64),
            ],
        );
        let p = b.ptr(fpstate);
        b.agg(
            KIND_STRUCT,
            "fpu",
            4288,
            &[
                ("last_cpu", u32_, 0),
                ("fpstate", p, 16),
                ("__task_fpstate", p, 24),
                ("__fpstate", fpstate, 128),
            ],
        );
        let new = Btf::parse(&b.finish()).unwrap();
        assert_eq!(
            new.fpu_offsets("6.1").unwrap(),
            (FPU_LAYOUT_FPSTATE, 16, 88)
        );

        // Neither: the fingerprint degrades with the kernel named.
        let mut b = Builder::new();
        fpregs_state(&mut b);
        let u32_ = b.int("unsigned int", 4);
        b.agg(KIND_STRUCT, "fpu", 8, &[("last_cpu", u32_, 0)]);
        let none = Btf::parse(&b.finish()).unwrap();
        let err = none.fpu_offsets("4.19.0-x").unwrap_err().to_string();
        assert!(err.contains("4.19.0-x"), "{err}");
        let (o, e) = none.with_fpu(KernelOffsets::zeroed(), "4.19.0-x");
        assert!(e.is_some());
        assert_eq!(o.fpu_layout, miner_ebpf_common::FPU_LAYOUT_UNKNOWN);
    }
}
