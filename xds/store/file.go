package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/sluice-gateway/sluice/internal/config"
)

// ErrLocked: another process (or another FileStore in this one) has the directory open.
var ErrLocked = errors.New("store: directory is in use")

const (
	logName  = "store.log"
	tmpName  = "store.log.tmp"
	lockName = "LOCK"

	// A log is compacted when it exceeds compactMinBytes and compactRatio times the live
	// data it holds.
	compactMinBytes = 4 << 20
	compactRatio    = 3
	// recordOverhead estimates a record's bytes beyond the value, for the live size.
	recordOverhead = 96
)

// FileStore is the embedded Store: an append-only, checksummed log on disk replayed into
// memory at open. Reads are served from memory; each write appends one record and fsyncs
// it before it is applied and acknowledged. The log is compacted (rewritten to a temporary
// file, fsynced, renamed over, directory fsynced) when mostly dead. An flock on the
// directory keeps a second process out.
type FileStore struct {
	dir  string
	lock *os.File // holds the flock; immutable after open
	hub  *hub

	mu     sync.RWMutex // guards the fields below
	f      *os.File     // the log, opened O_APPEND
	size   int64        // bytes in the log
	live   int64        // estimated bytes a compacted log would need
	rev    int64
	docs   map[config.Kind]map[string]*fileDoc
	index  map[indexKey]docKey
	broken error // set when a write failed midway; the log may not match memory
	closed bool
}

type docKey struct {
	kind config.Kind
	id   string
}

type indexKey struct{ name, key string }

type fileDoc struct {
	rev   int64
	value []byte
	owns  map[indexKey]struct{}
}

var _ Store = (*FileStore)(nil)

// OpenFile opens (creating if needed) the store in dir. It fails with ErrLocked if the
// directory is already open, and with a corruption error if the log is damaged anywhere but
// in its last, unacknowledged record (which it discards).
func OpenFile(dir string) (_ *FileStore, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &FileStore{dir: dir, hub: newHub(), docs: map[config.Kind]map[string]*fileDoc{}, index: map[indexKey]docKey{}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.lock, err = lockFile(filepath.Join(dir, lockName)); err != nil {
		return nil, err
	}
	// A leftover temporary log is an interrupted compaction; the real log is intact.
	if err := os.Remove(filepath.Join(dir, tmpName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("store: %w", err)
	}
	path := filepath.Join(dir, logName)
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("store: %w", err)
	}
	recs, good, err := decodeLog(b)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	for i := range recs {
		s.apply(&recs[i])
	}
	if good == 0 { // new (or interrupted while new): write the magic
		if err := writeFileSync(path, []byte(logMagic)); err != nil {
			return nil, err
		}
		good = len(logMagic)
	} else if good < len(b) { // drop a torn final record
		if err := truncateSync(path, int64(good)); err != nil {
			return nil, err
		}
	}
	if s.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s.size = int64(good)
	if s.size > compactMinBytes && s.size > compactRatio*s.live {
		if err := s.compactLocked(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// apply replays or commits one record into memory. Caller holds mu (or owns s).
func (s *FileStore) apply(r *logRecord) {
	s.rev = max(s.rev, r.Rev)
	k := docKey{r.Kind, r.ID}
	switch r.Op {
	case "put":
		docs := s.docs[r.Kind]
		if docs == nil {
			docs = map[string]*fileDoc{}
			s.docs[r.Kind] = docs
		}
		d := docs[r.ID]
		if d == nil {
			d = &fileDoc{owns: map[indexKey]struct{}{}}
			docs[r.ID] = d
			s.live += recordOverhead + int64(len(r.ID))
		}
		s.live += int64(len(r.Value) - len(d.value))
		d.rev, d.value = r.Rev, r.Value
		for _, e := range r.Unset {
			ik := indexKey{e[0], e[1]}
			if s.index[ik] == k {
				delete(s.index, ik)
				delete(d.owns, ik)
				s.live -= int64(len(ik.name) + len(ik.key))
			}
		}
		for _, e := range r.Set {
			ik := indexKey{e[0], e[1]}
			if owner, ok := s.index[ik]; ok && owner != k { // never committed, but stay consistent
				if od := s.docs[owner.kind][owner.id]; od != nil {
					delete(od.owns, ik)
				}
			}
			if _, ok := d.owns[ik]; !ok {
				s.live += int64(len(ik.name) + len(ik.key))
			}
			s.index[ik] = k
			d.owns[ik] = struct{}{}
		}
	case "del":
		d := s.docs[r.Kind][r.ID]
		if d == nil {
			return
		}
		for ik := range d.owns {
			if s.index[ik] == k {
				delete(s.index, ik)
			}
			s.live -= int64(len(ik.name) + len(ik.key))
		}
		s.live -= recordOverhead + int64(len(r.ID)+len(d.value))
		delete(s.docs[r.Kind], r.ID)
	}
}

// Get implements [Store.Get].
func (s *FileStore) Get(ctx context.Context, kind config.Kind, id string) (Doc, error) {
	if err := checkKey(kind, id); err != nil {
		return Doc{}, err
	}
	if err := ctx.Err(); err != nil {
		return Doc{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return Doc{}, ErrClosed
	}
	d := s.docs[kind][id]
	if d == nil {
		return Doc{}, ErrNotFound
	}
	return Doc{Kind: kind, ID: id, Revision: d.rev, Value: bytes.Clone(d.value)}, nil
}

// List implements [Store.List].
func (s *FileStore) List(ctx context.Context, kind config.Kind) ([]Doc, error) {
	if !kind.Valid() {
		return nil, fmt.Errorf("store: unknown kind %q", kind)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	docs := s.docs[kind]
	out := make([]Doc, 0, len(docs))
	for _, id := range slices.Sorted(maps.Keys(docs)) {
		d := docs[id]
		out = append(out, Doc{Kind: kind, ID: id, Revision: d.rev, Value: bytes.Clone(d.value)})
	}
	return out, nil
}

// Index implements [Store.Index].
func (s *FileStore) Index(ctx context.Context, name, key string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return "", ErrClosed
	}
	owner, ok := s.index[indexKey{name, key}]
	if !ok {
		return "", ErrNotFound
	}
	return owner.id, nil
}

// Revision implements [Store.Revision].
func (s *FileStore) Revision(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.rev, nil
}

// Put implements [Store.Put].
func (s *FileStore) Put(ctx context.Context, kind config.Kind, id string, value []byte, ifRevision int64) (Doc, error) {
	return s.PutIndexed(ctx, kind, id, value, ifRevision, nil, nil)
}

// PutIndexed implements [Store.PutIndexed].
func (s *FileStore) PutIndexed(ctx context.Context, kind config.Kind, id string, value []byte, ifRevision int64,
	index, unindex map[string]string) (Doc, error) {
	if err := errors.Join(checkKey(kind, id), checkIndex(index, unindex)); err != nil {
		return Doc{}, err
	}
	if ifRevision < Unconditional {
		return Doc{}, fmt.Errorf("store: invalid ifRevision %d", ifRevision)
	}
	if err := ctx.Err(); err != nil {
		return Doc{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return Doc{}, err
	}
	cur := s.docs[kind][id]
	switch {
	case ifRevision == CreateOnly && cur != nil:
		return Doc{}, fmt.Errorf("%w: %s %s", ErrExists, kind, id)
	case ifRevision > 0 && cur == nil:
		return Doc{}, fmt.Errorf("%w: %s %s", ErrNotFound, kind, id)
	case ifRevision > 0 && cur.rev != ifRevision:
		return Doc{}, fmt.Errorf("%w: %s %s is at revision %d, not %d", ErrConflict, kind, id, cur.rev, ifRevision)
	}
	me := docKey{kind, id}
	r := &logRecord{Op: "put", Rev: s.rev + 1, Kind: kind, ID: id, Value: bytes.Clone(value)}
	for _, name := range slices.Sorted(maps.Keys(index)) {
		if owner, ok := s.index[indexKey{name, index[name]}]; ok && owner != me {
			return Doc{}, fmt.Errorf("%w: index %q entry is owned by %s %s", ErrExists, name, owner.kind, owner.id)
		}
		r.Set = append(r.Set, [2]string{name, index[name]})
	}
	for _, name := range slices.Sorted(maps.Keys(unindex)) {
		r.Unset = append(r.Unset, [2]string{name, unindex[name]})
	}
	if err := s.commitLocked(r); err != nil {
		return Doc{}, err
	}
	return Doc{Kind: kind, ID: id, Revision: r.Rev, Value: bytes.Clone(value)}, nil
}

// Delete implements [Store.Delete].
func (s *FileStore) Delete(ctx context.Context, kind config.Kind, id string, ifRevision int64) error {
	if err := checkKey(kind, id); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	cur := s.docs[kind][id]
	switch {
	case cur == nil:
		return fmt.Errorf("%w: %s %s", ErrNotFound, kind, id)
	case ifRevision > 0 && cur.rev != ifRevision:
		return fmt.Errorf("%w: %s %s is at revision %d, not %d", ErrConflict, kind, id, cur.rev, ifRevision)
	}
	return s.commitLocked(&logRecord{Op: "del", Rev: s.rev + 1, Kind: kind, ID: id})
}

func (s *FileStore) writable() error {
	if s.closed {
		return ErrClosed
	}
	if s.broken != nil {
		return fmt.Errorf("store: a write failed earlier and the store must be reopened: %w", s.broken)
	}
	return nil
}

// commitLocked appends r durably, applies it and publishes its event. Caller holds mu.
func (s *FileStore) commitLocked(r *logRecord) error {
	frame, err := encodeRecord(r)
	if err != nil {
		return err
	}
	if _, err := s.f.Write(frame); err != nil {
		s.broken = err
		return fmt.Errorf("store: append: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		// After a failed fsync the page cache can't be trusted (the record may or may not
		// be on disk), so refuse further writes until a reopen replays the log.
		s.broken = err
		return fmt.Errorf("store: fsync: %w", err)
	}
	s.size += int64(len(frame))
	s.apply(r)
	s.hub.publish(Event{Kind: r.Kind, ID: r.ID, Revision: r.Rev, Deleted: r.Op == "del"})
	if s.size > compactMinBytes && s.size > compactRatio*s.live {
		// The write is committed; a failed compaction leaves the old log in use.
		_ = s.compactLocked()
	}
	return nil
}

// Compact rewrites the log to hold only live documents.
func (s *FileStore) Compact() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writable(); err != nil {
		return err
	}
	return s.compactLocked()
}

func (s *FileStore) compactLocked() error {
	var buf bytes.Buffer
	buf.WriteString(logMagic)
	kinds := config.Kinds()
	for _, kind := range kinds {
		docs := s.docs[kind]
		for _, id := range slices.Sorted(maps.Keys(docs)) {
			d := docs[id]
			r := &logRecord{Op: "put", Rev: d.rev, Kind: kind, ID: id, Value: d.value}
			for ik := range d.owns {
				r.Set = append(r.Set, [2]string{ik.name, ik.key})
			}
			slices.SortFunc(r.Set, func(a, b [2]string) int {
				return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1]))
			})
			frame, err := encodeRecord(r)
			if err != nil {
				return err
			}
			buf.Write(frame)
		}
	}
	if s.rev > 0 {
		frame, err := encodeRecord(&logRecord{Op: "rev", Rev: s.rev})
		if err != nil {
			return err
		}
		buf.Write(frame)
	}
	tmp, path := filepath.Join(s.dir, tmpName), filepath.Join(s.dir, logName)
	if err := writeFileSync(tmp, buf.Bytes()); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("store: compact: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		s.broken = err // the rename may not be durable
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.broken = err // the old handle points at the replaced file
		return fmt.Errorf("store: compact: %w", err)
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.size = f, int64(buf.Len())
	return nil
}

// Watch implements [Store.Watch].
func (s *FileStore) Watch(ctx context.Context) (<-chan Event, error) {
	// Holding mu orders the subscription against commits: every commit after this
	// returns is published to the new watcher.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return s.hub.subscribe(ctx)
}

// Close implements [Store.Close]. It releases the flock.
func (s *FileStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var errs []error
	if s.f != nil {
		errs = append(errs, s.f.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	s.mu.Unlock()
	s.hub.close()
	return errors.Join(errs...)
}

// writeFileSync writes path durably: write, fsync the file, fsync the directory.
func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("store: truncate torn record: %w", err)
	}
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("store: fsync %s: %w", dir, err)
	}
	return nil
}
