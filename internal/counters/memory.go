package counters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// MemoryStore is the in-process Store: one mutex-guarded map. Settled debits are appended
// to a journal (see journal.go) so a restart loses no spend; holds live in memory only and
// die with the process.
type MemoryStore struct {
	// Immutable after OpenMemory.
	now        func() time.Time
	holdTTL    int64 // ms
	settledTTL int64 // ms
	sync       bool
	log        *slog.Logger

	// mu guards everything below.
	mu        sync.Mutex
	cells     map[cellKey]*cell
	settled   map[idKey]int64 // id → when it is forgotten, Unix ms
	nextSweep int64           // Unix ms
	j         *journal        // nil when not persisted
	closed    bool
}

var _ Store = (*MemoryStore)(nil)

// cellKey names one window of one counter.
type cellKey struct {
	slot, key string
	window    Window
	start     int64
}

type idKey struct{ slot, id string }

// cell is one window of one counter.
type cell struct {
	spent, reserved int64
	end             int64 // window end, Unix s; 0 for total
	holds           map[string]hold
	minExp          int64 // earliest hold expiry, Unix ms; meaningful when holds is non-empty
}

type hold struct {
	amount int64
	exp    int64 // Unix ms
}

const (
	dayMs        = day * 1000
	sweepEveryMs = 60_000
)

// OpenMemory opens the in-process store, replaying and compacting the journal at path
// ("" for none, in tests). The journal is locked, so one process (one store) uses it at a
// time.
func OpenMemory(path string, opts Options) (*MemoryStore, error) {
	opts = opts.withDefaults()
	s := &MemoryStore{
		now:        opts.Now,
		holdTTL:    max(opts.HoldTTL.Milliseconds(), 1),
		settledTTL: max(opts.SettledTTL.Milliseconds(), 1),
		sync:       opts.Sync,
		log:        opts.Logger,
		cells:      make(map[cellKey]*cell),
		settled:    make(map[idKey]int64),
	}
	if path != "" {
		j, err := openJournal(path, s)
		if err != nil {
			return nil, err
		}
		s.j = j
	}
	return s, nil
}

// purge drops c's expired holds from reserved.
func (c *cell) purge(nowMs int64) {
	if len(c.holds) == 0 || nowMs < c.minExp {
		return
	}
	next := int64(0)
	for id, h := range c.holds {
		if h.exp <= nowMs {
			c.reserved -= h.amount
			delete(c.holds, id)
		} else if next == 0 || h.exp < next {
			next = h.exp
		}
	}
	c.minExp = next
}

// cell returns the cell of k, creating it. s.mu must be held.
func (s *MemoryStore) cell(k cellKey, end int64) *cell {
	c := s.cells[k]
	if c == nil {
		c = &cell{end: end}
		s.cells[k] = c
	}
	return c
}

// sweep forgets windows that ended more than a day ago, empty cells and expired settled
// ids, at most once a minute. s.mu must be held.
func (s *MemoryStore) sweep(nowMs int64) {
	if nowMs < s.nextSweep {
		return
	}
	s.nextSweep = nowMs + sweepEveryMs
	for k, c := range s.cells {
		c.purge(nowMs)
		if c.end != 0 && c.end*1000+dayMs <= nowMs || c.spent == 0 && c.reserved == 0 && len(c.holds) == 0 {
			delete(s.cells, k)
		}
	}
	for k, exp := range s.settled {
		if exp <= nowMs {
			delete(s.settled, k)
		}
	}
}

// isSettled reports whether id was settled and is still remembered. s.mu must be held.
func (s *MemoryStore) isSettled(k idKey, nowMs int64) bool {
	exp, ok := s.settled[k]
	return ok && exp > nowMs
}

// Reserve implements [Store.Reserve].
func (s *MemoryStore) Reserve(_ context.Context, slot, id string, cs []Counter) (Admission, error) {
	if err := checkCall(slot, id, cs, nil, false); err != nil {
		return Admission{}, err
	}
	now := s.now()
	sec, nowMs := now.Unix(), now.UnixMilli()
	adm := Admission{Denied: -1, Committed: make([]int64, len(cs)), Counters: slices.Clone(cs)}
	var buf [8]*cell
	cells := buf[:0]

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Admission{}, ErrClosed
	}
	s.sweep(nowMs)
	if s.isSettled(idKey{slot, id}, nowMs) {
		return Admission{}, ErrIDReused
	}
	for i := range adm.Counters {
		c := &adm.Counters[i]
		start, end := c.Window.bounds(sec)
		c.Start = start
		cl := s.cell(cellKey{slot, c.Key, c.Window, start}, end)
		cl.purge(nowMs)
		cells = append(cells, cl)
		committed := cl.spent + cl.reserved
		adm.Committed[i] = committed
		if _, held := cl.holds[id]; held {
			continue
		}
		if c.Block && adm.Denied < 0 && c.Amount > c.Limit-committed {
			adm.Denied = i
			if end != 0 {
				adm.RetryAfter = time.Unix(end, 0).Sub(now)
			}
		}
	}
	if adm.Denied >= 0 {
		return adm, nil
	}
	exp := nowMs + s.holdTTL
	for i, cl := range cells {
		if _, held := cl.holds[id]; held {
			continue
		}
		amount := adm.Counters[i].Amount
		if cl.holds == nil {
			cl.holds = make(map[string]hold, 1)
		}
		if len(cl.holds) == 0 || exp < cl.minExp {
			cl.minExp = exp
		}
		cl.holds[id] = hold{amount: amount, exp: exp}
		cl.reserved += amount
		adm.Committed[i] += amount
	}
	adm.OK = true
	return adm, nil
}

// Settle implements [Store.Settle].
func (s *MemoryStore) Settle(_ context.Context, slot, id string, cs []Counter, actual map[Unit]int64) error {
	if err := checkCall(slot, id, cs, actual, true); err != nil {
		return err
	}
	nowMs := s.now().UnixMilli()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	ik := idKey{slot, id}
	if s.isSettled(ik, nowMs) {
		s.mu.Unlock()
		return nil
	}
	// Journal first: if the write fails nothing changed and the caller may retry.
	if s.j != nil {
		if err := s.j.appendSettle(nowMs, slot, id, cs, actual); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	for i := range cs {
		c := &cs[i]
		_, end := c.Window.bounds(c.Start)
		cl := s.cell(cellKey{slot, c.Key, c.Window, c.Start}, end)
		cl.purge(nowMs)
		if h, ok := cl.holds[id]; ok {
			cl.reserved -= h.amount
			delete(cl.holds, id)
		}
		cl.spent += settleAmount(c, actual)
	}
	s.settled[ik] = nowMs + s.settledTTL
	var syncF *os.File
	compact := false
	if j := s.j; j != nil {
		if s.sync {
			syncF = j.f
		}
		compact = j.size >= j.compactAt && !j.compacting
	}
	s.mu.Unlock()
	// Outside the lock, so admissions don't wait for the disk. A file closed meanwhile was
	// synced by whoever closed it (a compaction or Close).
	if syncF != nil {
		if err := syncF.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("counters: journal sync: %w", err)
		}
	}
	if compact {
		// The debit is journaled; a failed compaction only leaves the journal long.
		if err := s.compactOnline(); err != nil {
			s.log.Warn("counters: journal compaction failed", "err", err)
		}
	}
	return nil
}

// Release implements [Store.Release].
func (s *MemoryStore) Release(ctx context.Context, slot, id string, cs []Counter) error {
	return s.Settle(ctx, slot, id, cs, releaseActual)
}

// Usage implements [Store.Usage].
func (s *MemoryStore) Usage(_ context.Context, slot string, c Counter, at time.Time) (spent, reserved int64, err error) {
	if !validName(slot, maxSlotLen, true) {
		return 0, 0, invalid("slot %q", slot)
	}
	if err := checkCounter(&c); err != nil {
		return 0, 0, err
	}
	start, _ := c.Window.bounds(at.Unix())
	nowMs := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, 0, ErrClosed
	}
	cl := s.cells[cellKey{slot, c.Key, c.Window, start}]
	if cl == nil {
		return 0, 0, nil
	}
	cl.purge(nowMs)
	return cl.spent, cl.reserved, nil
}

// Close closes the journal. Holds are lost.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.j != nil {
		return s.j.close()
	}
	return nil
}
