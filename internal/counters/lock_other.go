//go:build !unix

package counters

import (
	"errors"
	"os"
)

// ErrLocked is returned by OpenMemory when another store holds the journal.
var ErrLocked = errors.New("counters: journal is locked")

func lockFile(string) (*os.File, error) {
	return nil, errors.New("counters: a persisted memory store needs flock, which this platform lacks")
}
