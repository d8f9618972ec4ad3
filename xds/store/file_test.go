package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fileBackend(t *testing.T) func() (Store, error) {
	dir := t.TempDir()
	return func() (Store, error) { return OpenFile(dir) }
}

func TestFileStoreContract(t *testing.T) { contractTest(t, fileBackend) }

func TestFileStoreLock(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s2, err := OpenFile(dir); !errors.Is(err, ErrLocked) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenFile(dir)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	s.Close()
	if _, err := s.Put(context.Background(), vk, "vk_1", nil, Unconditional); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Close: %v", err)
	}
}

// seed writes three committed records and returns the dir and the log's size.
func seed(t *testing.T) (string, int64) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.PutIndexed(ctx, vk, "vk_1", []byte("one"), CreateOnly, map[string]string{"vk_hash": "h1"}, nil)
	s.Put(ctx, vk, "vk_2", []byte("two"), CreateOnly)
	s.Put(ctx, vk, "vk_1", []byte("uno"), 1)
	s.Close()
	fi, err := os.Stat(filepath.Join(dir, logName))
	if err != nil {
		t.Fatal(err)
	}
	return dir, fi.Size()
}

func checkSeeded(t *testing.T, s *FileStore) {
	t.Helper()
	ctx := context.Background()
	if rev, _ := s.Revision(ctx); rev != 3 {
		t.Fatalf("Revision = %d, want 3", rev)
	}
	if d, _ := s.Get(ctx, vk, "vk_1"); string(d.Value) != "uno" || d.Revision != 3 {
		t.Fatalf("vk_1 = %+v", d)
	}
	if id, _ := s.Index(ctx, "vk_hash", "h1"); id != "vk_1" {
		t.Fatal("index lost")
	}
	// And the log is writable again, at the next revision.
	if d, err := s.Put(ctx, vk, "vk_4", nil, CreateOnly); err != nil || d.Revision != 4 {
		t.Fatalf("write after recovery = %+v, %v", d, err)
	}
}

func TestFileStoreCrashRecovery(t *testing.T) {
	frame, _ := encodeRecord(&logRecord{Op: "put", Rev: 4, Kind: vk, ID: "vk_torn", Value: []byte("never acknowledged")})
	cases := map[string]func(t *testing.T, log string, size int64){
		"torn header":  func(t *testing.T, log string, _ int64) { appendBytes(t, log, frame[:5]) },
		"torn payload": func(t *testing.T, log string, _ int64) { appendBytes(t, log, frame[:len(frame)-3]) },
		"bad checksum": func(t *testing.T, log string, _ int64) {
			bad := append([]byte(nil), frame...)
			bad[len(bad)-2] ^= 0xff
			appendBytes(t, log, bad)
		},
		"zero-filled tail": func(t *testing.T, log string, _ int64) { appendBytes(t, log, make([]byte, 4096)) },
		"record then zeros": func(t *testing.T, log string, _ int64) {
			bad := append([]byte(nil), frame...)
			copy(bad[20:], make([]byte, 10))
			appendBytes(t, log, append(bad, make([]byte, 100)...))
		},
		"leftover compaction temp": func(t *testing.T, log string, _ int64) {
			os.WriteFile(filepath.Join(filepath.Dir(log), tmpName), []byte("SLUICEL1 half a compaction"), 0o600)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir, size := seed(t)
			log := filepath.Join(dir, logName)
			damage(t, log, size)
			s, err := OpenFile(dir)
			if err != nil {
				t.Fatalf("open after %s: %v", name, err)
			}
			defer s.Close()
			if _, err := s.Get(context.Background(), vk, "vk_torn"); !errors.Is(err, ErrNotFound) {
				t.Fatal("an unacknowledged record was replayed")
			}
			if _, err := os.Stat(filepath.Join(dir, tmpName)); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("temp file left behind")
			}
			checkSeeded(t, s)
		})
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestFileStoreRefusesCorruption(t *testing.T) {
	t.Run("middle record", func(t *testing.T) {
		dir, _ := seed(t)
		log := filepath.Join(dir, logName)
		b, _ := os.ReadFile(log)
		b[len(logMagic)+12] ^= 0xff // inside the first record's payload
		os.WriteFile(log, b, 0o600)
		if s, err := OpenFile(dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
			if s != nil {
				s.Close()
			}
			t.Fatalf("open = %v, want a corruption error", err)
		}
		// The failed open released the lock.
		if s, err := OpenFile(dir); err == nil || errors.Is(err, ErrLocked) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("second open: %v", err)
		}
	})
	t.Run("not a log", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, logName), []byte("hello, world"), 0o600)
		if s, err := OpenFile(dir); err == nil {
			s.Close()
			t.Fatal("opened a foreign file")
		}
	})
}

func TestFileStoreCompaction(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		s.PutIndexed(ctx, vk, "vk_1", []byte(strings.Repeat("x", i)), Unconditional, map[string]string{"vk_hash": "h1"}, nil)
	}
	s.PutIndexed(ctx, vk, "vk_2", []byte("two"), CreateOnly, map[string]string{"vk_hash": "h2", "name": "two"}, nil)
	s.Put(ctx, vk, "vk_3", nil, CreateOnly)
	s.Delete(ctx, vk, "vk_3", Unconditional) // revision 203 is carried by no document
	log := filepath.Join(dir, logName)
	before, _ := os.Stat(log)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(log)
	if after.Size() >= before.Size()/4 {
		t.Fatalf("compaction %d → %d bytes", before.Size(), after.Size())
	}
	if d, err := s.Put(ctx, vk, "vk_4", nil, CreateOnly); err != nil || d.Revision != 204 {
		t.Fatalf("write after compaction = %+v, %v", d, err)
	}
	s.Close()
	s, err = OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if rev, _ := s.Revision(ctx); rev != 204 {
		t.Fatalf("Revision = %d", rev)
	}
	if d, _ := s.Get(ctx, vk, "vk_1"); len(d.Value) != 199 || d.Revision != 200 {
		t.Fatalf("vk_1 = rev %d, %d bytes", d.Revision, len(d.Value))
	}
	for k, want := range map[[2]string]string{{"vk_hash", "h1"}: "vk_1", {"vk_hash", "h2"}: "vk_2", {"name", "two"}: "vk_2"} {
		if id, _ := s.Index(ctx, k[0], k[1]); id != want {
			t.Fatalf("index %v → %q", k, id)
		}
	}
}
