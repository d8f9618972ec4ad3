package mainlib

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateSecretSources(t *testing.T) {
	dir := t.TempDir()
	const env = "SLUICE_TEST_SECRET"

	// Generated once into the state directory, owner-only, then stable.
	t.Setenv(env, "")
	g1, err := stateSecret(env, dir, "s")
	if err != nil || len(g1) < 32 {
		t.Fatalf("generated: %q, %v", g1, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "s")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("generated file mode: %v, %v", fi.Mode(), err)
	}
	if g2, _ := stateSecret(env, dir, "s"); g2 != g1 {
		t.Fatal("a second start generated a different secret")
	}

	// A mounted file (VAR_FILE) wins over the state directory; the variable wins over both.
	f := filepath.Join(t.TempDir(), "mounted")
	if err := os.WriteFile(f, []byte("from-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(env+"_FILE", f)
	if got, _ := stateSecret(env, dir, "s"); got != "from-file-0123456789" {
		t.Fatalf("with %s_FILE: %q", env, got)
	}
	t.Setenv(env, "from-env")
	if got, _ := stateSecret(env, dir, "s"); got != "from-env" {
		t.Fatalf("with %s: %q", env, got)
	}

	// Without a state directory nothing is generated, and errors name the variable, not a value.
	t.Setenv(env, "")
	t.Setenv(env+"_FILE", "")
	if _, err := stateSecret(env, "", ""); err == nil || !strings.Contains(err.Error(), env) {
		t.Fatalf("no source: %v", err)
	}
	t.Setenv(env+"_FILE", filepath.Join(dir, "missing"))
	if _, err := stateSecret(env, "", ""); err == nil {
		t.Fatal("a missing VAR_FILE was accepted")
	}
}
