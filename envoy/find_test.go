package envoy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-gateway/sluice/envoy"
)

func writeExec(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestFindBinaryEnv(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "envoy")
	writeExec(t, bin, "\x7fELF")
	t.Setenv(envoy.EnvBinary, bin)
	if got, err := envoy.FindBinary(); err != nil || got != bin {
		t.Errorf("FindBinary = %q, %v; want %q", got, err, bin)
	}
	t.Setenv(envoy.EnvBinary, filepath.Join(t.TempDir(), "missing"))
	if _, err := envoy.FindBinary(); err == nil {
		t.Error("FindBinary accepted a missing $SLUICE_ENVOY_BIN")
	}
}

func TestFindBinaryPrefersRealOverShim(t *testing.T) {
	venv := t.TempDir()
	writeExec(t, filepath.Join(venv, "bin/envoy"), "#!/usr/bin/python3\nimport envoy\n")
	real := filepath.Join(venv, "lib/python3.11/site-packages/envoy/_bin/envoy")
	writeExec(t, real, "\x7fELF")
	t.Setenv(envoy.EnvBinary, "")
	t.Setenv("PATH", filepath.Join(venv, "bin"))
	t.Chdir(t.TempDir())
	if got, err := envoy.FindBinary(); err != nil || got != real {
		t.Errorf("FindBinary = %q, %v; want the real binary %q", got, err, real)
	}
}

func TestFindBinaryLocalVenv(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, ".venv/lib/python3.12/site-packages/envoy/_bin/envoy")
	writeExec(t, real, "\x7fELF")
	t.Setenv(envoy.EnvBinary, "")
	t.Setenv("PATH", t.TempDir())
	t.Chdir(dir)
	got, err := envoy.FindBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := filepath.EvalSymlinks(real); mustEval(t, got) != want {
		t.Errorf("FindBinary = %q, want %q", got, real)
	}

	t.Chdir(t.TempDir())
	if _, err := envoy.FindBinary(); err == nil {
		t.Error("FindBinary found something in an empty environment")
	}
}

func mustEval(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
