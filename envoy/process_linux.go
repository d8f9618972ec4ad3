package envoy

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel SIGKILL Envoy when the parent dies,
// so a crashed sluice never leaves an orphan Envoy holding :8080. Caveat
// (prctl(2)): the signal fires when the forking OS thread exits; Go only
// retires threads of goroutines that exit while LockOSThread'd, which Sluice
// does not do around Start.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
