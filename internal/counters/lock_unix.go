//go:build unix

package counters

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrLocked is returned by OpenMemory when another store holds the journal.
var ErrLocked = errors.New("counters: journal is locked")

// lockFile takes an exclusive, non-blocking flock on path, so a second process (or a
// second MemoryStore in this one) can't use the same journal. The lock lives as long as
// the returned file is open.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("counters: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by another process (or another open store)", ErrLocked, path)
		}
		return nil, fmt.Errorf("counters: lock %s: %w", path, err)
	}
	return f, nil
}
