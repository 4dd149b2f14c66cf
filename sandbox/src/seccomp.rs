//! The machine's seccomp filter: installed by the machine's init before it starts `dockerd`, and by
//! `__enter` before it runs a command or a shell in the machine, so every process of a machine
//! (Docker, containerd, runc, the learner's containers, the learner's shell) runs under it. A
//! filter cannot be removed, only stacked on: `docker run --privileged` turns Docker's own profile
//! off for a container, never this one.
//!
//! It is a deny list, not an allow list: the machine is a whole Linux host for the learner (Docker
//! builds, `--privileged`, compilers, debuggers), and an allow list tight enough to matter would
//! break what the course teaches. What it denies is kernel surface that a user namespace can reach
//! and a container host does not need, chosen against Docker's default profile (which denies all
//! of it to containers) and against what dockerd, containerd and runc call:
//!
//! * `io_uring_setup`, `io_uring_enter`, `io_uring_register`: the largest source of kernel
//!   privilege escalations of recent years, reachable by any process; Docker's profile denies
//!   them, and neither Docker, containerd nor runc uses them. ENOSYS, as on a kernel built
//!   without io_uring, so programs that probe for it fall back to ordinary I/O.
//! * `keyctl`, `add_key`, `request_key`: the kernel keyring is a shared, often exploited
//!   subsystem that containers never need (Docker's profile denies it). ENOSYS, not EPERM: runc
//!   joins a fresh session keyring for every container and carries on only when the kernel says
//!   keyrings do not exist (ENOSYS); any other error fails `docker run`.
//! * `bpf`: the verifier is a classic escalation path; unprivileged eBPF is off on Debian anyway,
//!   and in a user namespace every privileged `bpf` command already fails with EPERM, which runc
//!   handles (its cgroup device filter), so EPERM changes nothing for Docker.
//! * `perf_event_open`: a large, often exploited interface, and a side channel on the host's CPU;
//!   Docker's profile denies it. EPERM, as with `perf_event_paranoid`.
//! * `userfaultfd`: lets an exploit stall the kernel at a chosen page fault to win a race; Docker
//!   denies it and nothing in a machine needs it.
//! * `open_by_handle_at`: opens a file by handle, bypassing the path walk (the "shocker" escape);
//!   needs CAP_DAC_READ_SEARCH on the host, denied as a second wall.
//! * `kexec_load`, `kexec_file_load`, `init_module`, `finit_module`, `delete_module`, `acct`,
//!   `swapon`, `swapoff`, `iopl`, `ioperm`, `settimeofday`, `clock_settime` (and 32-bit `stime`,
//!   `clock_settime64`): host-wide actions that need a capability in the host's user namespace,
//!   which no machine has; denied with EPERM (the errno the kernel gives today) so no bug in a
//!   capability check can make them reachable. `adjtimex` and `clock_adjtime` stay: read-only
//!   use is unprivileged and Docker allows them.
//! * `syslog`: the host's kernel log (addresses, other machines' messages); `dmesg_restrict`
//!   usually hides it already. EPERM.
//! * `lookup_dcookie`, `uselib`, and on 32-bit `vm86`/`vm86old`: obsolete interfaces with a
//!   history of bugs; ENOSYS.
//! * x32 system calls (x86-64 numbers with bit 30 set): a second, rarely audited entry to every
//!   system call, and a way around any deny list written in x86-64 numbers; nothing in a machine
//!   is built for x32. ENOSYS.
//!
//! Deliberately left open: `mount`, `unshare`, `setns`, `clone3`, `pivot_root` (Docker and runc
//! need them; the user namespace bounds them), `ptrace` (debugging in a container; Docker allows it
//! on modern kernels), `reboot` (confined to the machine's pid namespace: it ends the machine,
//! which the server then sees as stopped), and all networking (Docker needs nf_tables and netlink
//! in the machine's network namespace).
//!
//! 32-bit (i386) programs get the same list in i386 numbers. The filter is hand-written classic
//! BPF rather than built with `seccompiler`: that crate kills any process that makes a 32-bit
//! system call, cannot express "every x32 call", and always sets `no_new_privs`, which would stop
//! setuid programs (`su`, `sudo`, `ping`) in the learner's containers. Installing without
//! `no_new_privs` is allowed because the caller holds CAP_SYS_ADMIN in the machine's user namespace.

/// Why installing the filter failed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("installing the machine's seccomp filter ({instructions} instructions): {source}")]
    Install { instructions: usize, #[source] source: std::io::Error },
}

/// What a denied call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deny {
    /// As on a kernel without the feature.
    NoSys,
    /// As on a kernel that refuses the caller.
    Perm,
}

impl Deny {
    fn ret(self) -> u32 {
        let errno = match self {
            Deny::NoSys => libc::ENOSYS,
            Deny::Perm => libc::EPERM,
        };
        SECCOMP_RET_ERRNO | (errno as u32 & SECCOMP_RET_DATA)
    }
}

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_DATA: u32 = 0x0000_ffff;
const SECCOMP_SET_MODE_FILTER: libc::c_uint = 1;

/// `seccomp_data` offsets: `nr` (u32) then `arch` (u32).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

const AUDIT_ARCH_64BIT: u32 = 0x8000_0000;
const AUDIT_ARCH_LE: u32 = 0x4000_0000;
#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 62 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 183 | AUDIT_ARCH_64BIT | AUDIT_ARCH_LE; // AUDIT_ARCH_AARCH64
/// AUDIT_ARCH_I386: 32-bit programs on an x86-64 kernel.
#[cfg(target_arch = "x86_64")]
const COMPAT_ARCH: Option<u32> = Some(3 | AUDIT_ARCH_LE);
#[cfg(not(target_arch = "x86_64"))]
const COMPAT_ARCH: Option<u32> = None;
/// x32 system calls are x86-64 calls with this bit set in the number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The deny list in the native numbering (libc's, so it follows the target).
fn native_denied() -> Vec<(&'static str, i64, Deny)> {
    use Deny::*;
    let mut v = vec![
        ("io_uring_setup", libc::SYS_io_uring_setup, NoSys),
        ("io_uring_enter", libc::SYS_io_uring_enter, NoSys),
        ("io_uring_register", libc::SYS_io_uring_register, NoSys),
        ("keyctl", libc::SYS_keyctl, NoSys),
        ("add_key", libc::SYS_add_key, NoSys),
        ("request_key", libc::SYS_request_key, NoSys),
        ("bpf", libc::SYS_bpf, Perm),
        ("perf_event_open", libc::SYS_perf_event_open, Perm),
        ("userfaultfd", libc::SYS_userfaultfd, Perm),
        ("open_by_handle_at", libc::SYS_open_by_handle_at, Perm),
        ("kexec_load", libc::SYS_kexec_load, Perm),
        ("kexec_file_load", libc::SYS_kexec_file_load, Perm),
        ("init_module", libc::SYS_init_module, Perm),
        ("finit_module", libc::SYS_finit_module, Perm),
        ("delete_module", libc::SYS_delete_module, Perm),
        ("acct", libc::SYS_acct, Perm),
        ("swapon", libc::SYS_swapon, Perm),
        ("swapoff", libc::SYS_swapoff, Perm),
        ("settimeofday", libc::SYS_settimeofday, Perm),
        ("clock_settime", libc::SYS_clock_settime, Perm),
        ("syslog", libc::SYS_syslog, Perm),
        ("lookup_dcookie", libc::SYS_lookup_dcookie, NoSys),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        ("iopl", libc::SYS_iopl, Perm),
        ("ioperm", libc::SYS_ioperm, Perm),
        ("uselib", libc::SYS_uselib, NoSys),
    ]);
    v
}

/// The same list in i386 numbers (`asm/unistd_32.h`; checked against it in the tests).
#[cfg(target_arch = "x86_64")]
fn compat_denied() -> Vec<(&'static str, i64, Deny)> {
    use Deny::*;
    vec![
        ("io_uring_setup", 425, NoSys),
        ("io_uring_enter", 426, NoSys),
        ("io_uring_register", 427, NoSys),
        ("keyctl", 288, NoSys),
        ("add_key", 286, NoSys),
        ("request_key", 287, NoSys),
        ("bpf", 357, Perm),
        ("perf_event_open", 336, Perm),
        ("userfaultfd", 374, Perm),
        ("open_by_handle_at", 342, Perm),
        ("kexec_load", 283, Perm),
        ("init_module", 128, Perm),
        ("finit_module", 350, Perm),
        ("delete_module", 129, Perm),
        ("acct", 51, Perm),
        ("swapon", 87, Perm),
        ("swapoff", 115, Perm),
        ("settimeofday", 79, Perm),
        ("stime", 25, Perm),
        ("clock_settime", 264, Perm),
        ("clock_settime64", 404, Perm),
        ("syslog", 103, Perm),
        ("lookup_dcookie", 253, NoSys),
        ("iopl", 110, Perm),
        ("ioperm", 101, Perm),
        ("uselib", 86, NoSys),
        ("vm86", 166, NoSys),
        ("vm86old", 113, NoSys),
    ]
}
#[cfg(not(target_arch = "x86_64"))]
fn compat_denied() -> Vec<(&'static str, i64, Deny)> {
    Vec::new()
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}
fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt, jf, k }
}

/// Appends "load the number; for each entry, if it matches return its errno; allow".
fn deny_block(prog: &mut Vec<libc::sock_filter>, list: &[(&'static str, i64, Deny)], x32: bool) {
    prog.push(stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, OFFSET_NR));
    if x32 {
        // Unsigned compare: every number with bit 30 (or 31) set.
        prog.push(jump(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, X32_SYSCALL_BIT, 0, 1));
        prog.push(stmt(libc::BPF_RET | libc::BPF_K, Deny::NoSys.ret()));
    }
    for (_, nr, deny) in list {
        prog.push(jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, *nr as u32, 0, 1));
        prog.push(stmt(libc::BPF_RET | libc::BPF_K, deny.ret()));
    }
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, SECCOMP_RET_ALLOW));
}

/// The filter program.
pub fn program() -> Vec<libc::sock_filter> {
    let native = native_denied();
    let compat = compat_denied();
    let mut native_block = Vec::new();
    deny_block(&mut native_block, &native, cfg!(target_arch = "x86_64"));
    let mut compat_block = Vec::new();
    deny_block(&mut compat_block, &compat, false);

    let mut prog = vec![stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, OFFSET_ARCH)];
    // arch == native: fall through to the native block; otherwise skip over it.
    let skip_native = u8::try_from(native_block.len()).expect("the native block fits a jump");
    prog.push(jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, NATIVE_ARCH, 0, skip_native));
    prog.extend(native_block);
    if let Some(arch) = COMPAT_ARCH {
        let skip_compat = u8::try_from(compat_block.len()).expect("the compat block fits a jump");
        prog.push(jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, arch, 0, skip_compat));
        prog.extend(compat_block);
    }
    // Any other architecture: nothing in a machine is built for one.
    prog.push(stmt(libc::BPF_RET | libc::BPF_K, Deny::NoSys.ret()));
    prog
}

/// Installs the filter on the calling thread (and so on everything it starts). The caller must
/// be single-threaded and hold CAP_SYS_ADMIN in its user namespace (the machine's root does).
pub fn apply() -> Result<(), SeccompError> {
    install(&program())
}

fn install(prog: &[libc::sock_filter]) -> Result<(), SeccompError> {
    let fprog = libc::sock_fprog { len: prog.len() as libc::c_ushort, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the program.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0 as libc::c_uint, &fprog as *const libc::sock_fprog) };
    if r != 0 {
        return Err(SeccompError::Install { instructions: prog.len(), source: std::io::Error::last_os_error() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_fits_and_every_jump_lands_inside() {
        let p = program();
        assert!(p.len() < 4096, "{} instructions", p.len());
        for (i, ins) in p.iter().enumerate() {
            if ins.code as u32 & 0x07 == libc::BPF_JMP {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < p.len(), "jump at {i} leaves the program");
            }
        }
        assert_eq!(p.last().map(|i| i.k), Some(Deny::NoSys.ret()));
    }

    /// The i386 numbers are the kernel's (from the headers, when installed).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn compat_numbers_match_the_kernel_headers() {
        let Ok(h) = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_32.h") else { return };
        for (name, nr, _) in compat_denied() {
            let line = format!("#define __NR_{name} {nr}");
            assert!(h.lines().any(|l| l.trim() == line), "{line} not in unistd_32.h");
        }
    }

    /// Runs `f` in a forked child under the filter and returns its exit code.
    fn under_filter(f: fn() -> i32) -> i32 {
        let prog = program();
        // SAFETY: the child only makes raw system calls and leaves with _exit.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: raw prctl/seccomp calls on this child alone.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                let code = if install(&prog).is_ok() { f() } else { 99 };
                // SAFETY: leaves the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            pid => {
                let mut status = 0;
                // SAFETY: waits for the child just forked.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "child status {status:#x}");
                libc::WEXITSTATUS(status)
            }
        }
    }

    fn errno_of(r: libc::c_long) -> i32 {
        if r >= 0 { 0 } else { std::io::Error::last_os_error().raw_os_error().unwrap_or(-1) }
    }

    #[test]
    fn io_uring_keyrings_and_x32_are_refused_and_ordinary_calls_work() {
        let code = under_filter(|| {
            let mut params = [0u8; 120];
            // SAFETY: raw system calls with valid (or deliberately ignored) arguments.
            unsafe {
                if errno_of(libc::syscall(libc::SYS_io_uring_setup, 1, params.as_mut_ptr())) != libc::ENOSYS {
                    return 1;
                }
                if errno_of(libc::syscall(libc::SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, 0)) != libc::ENOSYS {
                    return 2;
                }
                if errno_of(libc::syscall(libc::SYS_perf_event_open, 0, 0, -1, -1, 0)) != libc::EPERM {
                    return 3;
                }
                if errno_of(libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT as i64)) != libc::ENOSYS {
                    return 4;
                }
                if libc::syscall(libc::SYS_getpid) != libc::getpid() as libc::c_long {
                    return 5;
                }
            }
            0
        });
        assert_eq!(code, 0, "check {code} failed under the filter");
    }

    /// A 32-bit system call (`int 0x80`) gets the i386 list: io_uring_setup refused, getpid fine.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_calls_get_the_same_list() {
        fn int80(nr: i64, a: i64, b: i64) -> i64 {
            let ret: i64;
            // SAFETY: a 32-bit system call with scalar arguments; clobbers only what int 0x80 does.
            // rbx is LLVM's, so the first argument goes through another register and is swapped in.
            unsafe {
                std::arch::asm!(
                    "xchg {a}, rbx", "int 0x80", "xchg {a}, rbx",
                    a = inout(reg) a => _, inlateout("rax") nr => ret, in("rcx") b,
                    lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
                )
            };
            ret
        }
        let code = under_filter(|| {
            let pid = int80(20, 0, 0);
            if pid == -(libc::ENOSYS as i64) {
                return 0; // no 32-bit emulation in this kernel: nothing to check
            }
            // SAFETY: getpid has no preconditions.
            if pid != unsafe { libc::getpid() } as i64 {
                return 1;
            }
            if int80(425, 1, 0) != -(libc::ENOSYS as i64) {
                return 2;
            }
            0
        });
        assert_eq!(code, 0, "check {code} failed under the filter");
    }
}
