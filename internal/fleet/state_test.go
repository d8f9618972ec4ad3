package fleet

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
)

// Saving is atomic, a torn temporary file from a crash does not break loading, and a corrupt
// state file is ignored (the replica waits for the server) rather than fatal.
func TestStateFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if st, err := loadState(path); st != nil || err != nil {
		t.Fatalf("missing file: %v, %v", st, err)
	}
	org := config.KindOrganization
	want := &stateFile{Format: stateFormat,
		Snapshot: &config.Snapshot{Version: "9", Resources: map[config.Kind]map[string]json.RawMessage{
			org: {"acme": json.RawMessage(`{"id":"acme"}`)}}},
		Versions: map[config.Kind]map[string]string{org: {"acme": "9"}}}
	if err := saveState(path, want); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode: %v, %v", fi, err)
	}
	// A crash during the next save leaves a torn temporary file behind.
	torn := path + ".tmp-123456"
	if err := os.WriteFile(torn, []byte(`{"format":1,"snapshot":{"version":"10","resou`), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(path)
	if err != nil || got.Snapshot.Version != "9" || string(got.Snapshot.Resources[org]["acme"]) != `{"id":"acme"}` ||
		got.Versions[org]["acme"] != "9" {
		t.Fatalf("load beside a torn temp file = %+v, %v", got, err)
	}
	if _, err := os.Stat(torn); !os.IsNotExist(err) {
		t.Errorf("torn temp file not cleaned up: %v", err)
	}

	// A client starting from it delivers it with no server at all.
	c, r := startClient(t, ClientConfig{Addr: "127.0.0.1:1", Kinds: dataKinds, StateFile: path})
	select {
	case <-c.Ready():
	case <-time.After(2 * time.Second):
		t.Fatal("not ready from the state file")
	}
	r.waitFor(t, "state-file snapshot", has(org, "acme"))

	// A corrupt (not torn-temp but truncated) state file is reported and ignored.
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"format":1,"snapshot":{"ver`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(bad); err == nil {
		t.Error("truncated state file loaded")
	}
	inconsistent := filepath.Join(dir, "inconsistent.json")
	if err := os.WriteFile(inconsistent, []byte(`{"format":1,"snapshot":{"version":"1","resources":{"organization":{"a":{}}}},"versions":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(inconsistent); err == nil {
		t.Error("state file without versions loaded")
	}
	logs := newLogBuffer()
	c2, r2 := startClient(t, ClientConfig{Addr: "127.0.0.1:1", Kinds: dataKinds, StateFile: bad,
		Logger: slogText(logs)})
	logs.waitCount(t, "stream lost", 1)
	select {
	case <-c2.Ready():
		t.Error("ready from a corrupt state file")
	default:
	}
	if r2.count() != 0 || !containsAll(logs.String(), "ignoring unreadable state file") {
		t.Errorf("corrupt state: %d snapshots; log:\n%s", r2.count(), logs.String())
	}
}
