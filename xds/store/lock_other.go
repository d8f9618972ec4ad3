//go:build !unix

package store

import (
	"errors"
	"os"
)

func lockFile(string) (*os.File, error) {
	return nil, errors.New("store: the file store needs flock, which this platform lacks")
}
