// Package bench measures cold starts: boot, eager restore, lazy restore
// (userfaultfd, mmap), prefetch and QEMU, on the same guest in one run
// (`smolvm bench`, docs/BENCHMARKS.md).
//
// Every method starts the same guest (kernel, initramfs with the agent,
// vCPUs, RAM) as a separate process and waits for it to be ready: the guest
// agent's ready notification as the VM's control socket records it for
// smolvm (boot, and run of a snapshot taken of that booted guest), a serial
// console line for QEMU (the ready marker after a boot; the shell's answer
// to a typed echo after an -incoming restore). Per method and RAM size it
// reports the time to ready (median, min, max), its ratio to a full boot,
// guest RAM read before ready and faults (smolvm run --stats), the VMM's
// RSS and PSS at ready (/proc/PID/smaps_rollup), what the method starts
// from, and optionally memory per clone with N running at once. Output:
// a table, JSON, a plot (gonum/plot). Without hardware KVM, RunInLab runs
// the whole bench inside the KVM lab VM and reads the report back.
//
// It must not assert speed in tests; it reports ratios, counts and times,
// labelled with the acceleration ("nested TCG" in the lab). It drives the
// smolvm and QEMU executables as a user would and never runs a VM or
// serves guest memory in its own process; it drops the page cache only
// when asked (the CLI asks inside the lab VM, never on a host in tests).
package bench
