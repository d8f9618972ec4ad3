package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sluice-gateway/sluice/internal/config"
)

// stateFormat versions the state file layout.
const stateFormat = 1

// stateFile is what a client persists for bootstrap mode: the snapshot it last delivered
// and, for each document, the version it holds (sent as initial_resource_versions).
type stateFile struct {
	Format   int                               `json:"format"`
	Snapshot *config.Snapshot                  `json:"snapshot"`
	Versions map[config.Kind]map[string]string `json:"versions"`
}

// loadState reads path. A missing file is (nil, nil); a file that does not parse or is
// inconsistent is an error (the caller starts empty). Temporary files a crash left behind
// are removed: only path itself is ever read.
func loadState(path string) (*stateFile, error) {
	if leftovers, _ := filepath.Glob(path + ".tmp-*"); len(leftovers) > 0 {
		for _, f := range leftovers {
			os.Remove(f)
		}
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	if st.Format != stateFormat || st.Snapshot == nil {
		return nil, fmt.Errorf("%s: unsupported state format %d", path, st.Format)
	}
	for kind, docs := range st.Snapshot.Resources {
		if !kind.Valid() {
			return nil, fmt.Errorf("%s: unknown kind %q", path, kind)
		}
		for id, doc := range docs {
			if _, ok := st.Versions[kind][id]; !ok || !json.Valid(doc) {
				return nil, fmt.Errorf("%s: %s %s: missing version or invalid document", path, kind, id)
			}
		}
	}
	return &st, nil
}

// saveState writes st to path atomically: a temporary file in the same directory, fsync,
// rename over path, fsync of the directory. A crash leaves either the old or the new file.
func saveState(path string, st *stateFile) (err error) {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*") // mode 0600: keys' hashes
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
