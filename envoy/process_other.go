//go:build !linux

package envoy

import "os/exec"

// setParentDeathSignal has no portable equivalent outside Linux; there the
// ctx-driven SIGTERM is the only cleanup.
func setParentDeathSignal(*exec.Cmd) {}
