// Package store is the control plane's source of truth: resources persisted as opaque
// JSON documents by (kind, id), a global revision that increases on every write, unique
// secondary indexes, and a watch stream of changes.
//
// Two implementations pass the same contract tests: FileStore (the default; embedded, one
// process, crash-safe append-only log) and RedisStore (a replicated control plane; every
// write is one atomic Lua script).
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sluice-gateway/sluice/internal/config"
)

// Errors; test them with errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
	ErrConflict = errors.New("store: revision conflict")
	ErrClosed   = errors.New("store: closed")
)

// Revision arguments for Put, PutIndexed and Delete.
const (
	// CreateOnly makes Put fail with ErrExists if the document exists.
	CreateOnly int64 = 0
	// Unconditional writes whatever the current revision.
	Unconditional int64 = -1
)

// Store persists resources as opaque documents by (kind, id) with a global revision.
//
// Implementations are safe for concurrent use. Values passed in are copied before the
// call returns, and returned Values are copies the caller owns. Every write (Put,
// PutIndexed, Delete) is atomic and durable when it returns nil, and takes the next global
// revision, which becomes the document's revision.
type Store interface {
	// Get returns one document, or ErrNotFound.
	Get(ctx context.Context, kind config.Kind, id string) (Doc, error)
	// List returns every document of kind, sorted by id, as of one revision.
	List(ctx context.Context, kind config.Kind) ([]Doc, error)
	// Put writes a document. ifRevision is CreateOnly (ErrExists if present), Unconditional,
	// or a revision > 0 the document must currently have (ErrConflict if it has another,
	// ErrNotFound if it is gone). Index entries the document owns are kept.
	Put(ctx context.Context, kind config.Kind, id string, value []byte, ifRevision int64) (Doc, error)
	// Delete removes a document and every index entry it owns. ifRevision > 0 deletes only
	// at that revision (ErrConflict); otherwise it is unconditional. ErrNotFound if absent.
	Delete(ctx context.Context, kind config.Kind, id string, ifRevision int64) error
	// Index looks up a unique secondary index entry (name, key) and returns the id of the
	// document owning it, or ErrNotFound.
	Index(ctx context.Context, name, key string) (id string, err error)
	// PutIndexed is Put that also, atomically, sets the index entries in index (name → key)
	// to this document and removes those in unindex that this document owns. It fails with
	// ErrExists, writing nothing, if an entry in index is owned by another document.
	PutIndexed(ctx context.Context, kind config.Kind, id string, value []byte, ifRevision int64,
		index, unindex map[string]string) (Doc, error)
	// Revision returns the global revision: 0 for an empty store, then the revision of the
	// latest write.
	Revision(ctx context.Context) (int64, error)
	// Watch streams an Event for every write committed after it returns, in revision
	// order, until ctx ends (then the channel is closed) or the store is closed. A consumer
	// that falls behind a bounded buffer, or misses events for any other reason (a lost
	// connection), receives one Event{Resync: true} and must then List what it needs;
	// events after the Resync may already be reflected in that List.
	Watch(ctx context.Context) (<-chan Event, error)
	// Close releases the store; watch channels are closed. It is safe to call twice.
	Close() error
}

// Doc is one stored document.
type Doc struct {
	Kind     config.Kind
	ID       string
	Revision int64
	Value    []byte
}

// Event reports one committed write, or (Resync) that events were lost.
type Event struct {
	Kind     config.Kind
	ID       string
	Revision int64
	Deleted  bool
	Resync   bool
}

const (
	maxIDLen    = 512
	maxIndexLen = 1024
)

// checkKey validates a (kind, id) pair: the kind must be known and the id printable,
// without whitespace or separators the implementations use.
func checkKey(kind config.Kind, id string) error {
	if !kind.Valid() {
		return fmt.Errorf("store: unknown kind %q", kind)
	}
	if id == "" || len(id) > maxIDLen || strings.ContainsFunc(id, badRune) {
		return fmt.Errorf("store: invalid %s id %q", kind, id)
	}
	return nil
}

func badRune(r rune) bool { return r <= ' ' || r == 0x7f }

func checkIndex(index, unindex map[string]string) error {
	for _, m := range []map[string]string{index, unindex} {
		for name, key := range m {
			if name == "" || len(name) > maxIndexLen || strings.ContainsFunc(name, badRune) {
				return fmt.Errorf("store: invalid index name %q", name)
			}
			if key == "" || len(key) > maxIndexLen || strings.ContainsRune(key, 0) {
				return errors.New("store: invalid index key")
			}
		}
	}
	for name, key := range unindex {
		if index[name] == key {
			return fmt.Errorf("store: index %q: key both set and removed", name)
		}
	}
	return nil
}
