package counters

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The memory store's journal is a text file of lines. The first is the header; every
// other line ends with " " + 8 lowercase hex digits of the CRC-32C of the text before
// that space:
//
//	sluice-counters 1
//	t <slot> <window> <start> <key> <spent> <crc>           a window's spent total (compaction)
//	x <slot> <id> <forget_ms> <crc>                         a settled id and when to forget it (compaction)
//	d <now_ms> <slot> <id> [<window> <start> <key> <amount>]... <crc>   one Settle
//
// start is the window start in Unix seconds, *_ms are Unix milliseconds. Every Settle
// that takes effect appends one d line (debits of 0 are left out) with a single write(2)
// on an O_APPEND file, before the in-memory state changes. Open replays the file, then
// compacts it: the current totals and settled ids are written to a temporary file that
// replaces the journal by rename, leaving out windows that ended more than a day ago and
// forgotten ids. A running store compacts the same way once the journal outgrows
// max(64 MiB, 4× its last compacted size); the snapshot is written outside the lock, then
// the lines appended meanwhile are copied over before the rename. A final line without
// its newline is what a crash mid-write leaves; it was never acknowledged and is ignored.
// Any other damage fails the open.

const journalHeader = "sluice-counters 1"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// minCompact is the journal size below which a running store does not compact.
const minCompact = 64 << 20

// journal is the open journal. The MemoryStore's mutex guards it.
type journal struct {
	path       string
	f          *os.File
	lock       *os.File
	size       int64  // bytes written, to undo a short write
	compactAt  int64  // size that triggers an online compaction
	minCompact int64  // compactAt's floor; tests lower it
	compacted  int    // online compactions done
	compacting bool   // an online compaction is writing its snapshot
	buf        []byte // reused line buffer
	err        error  // sticky: a short write that could not be undone
}

// openJournal locks path, replays it into s and compacts it.
func openJournal(path string, s *MemoryStore) (_ *journal, err error) {
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("counters: read journal: %w", err)
	}
	nowMs := s.now().UnixMilli()
	if err := s.replay(data, nowMs); err != nil {
		return nil, fmt.Errorf("counters: journal %s: %w", path, err)
	}
	tmp, size, err := writeSnapshot(path, s.snapshot(nowMs))
	if err != nil {
		return nil, fmt.Errorf("counters: compact journal: %w", err)
	}
	f, err := install(tmp, path)
	if err != nil {
		return nil, fmt.Errorf("counters: compact journal: %w", err)
	}
	return &journal{path: path, f: f, lock: lock, size: size, compactAt: max(minCompact, 4*size), minCompact: minCompact}, nil
}

var errCorrupt = errors.New("corrupt")

// replay applies a journal's lines to s.
func (s *MemoryStore) replay(data []byte, nowMs int64) error {
	if len(data) == 0 {
		return nil
	}
	hdr := journalHeader + "\n"
	if !bytes.HasPrefix(data, []byte(hdr)) {
		if len(data) < len(hdr) && bytes.HasPrefix([]byte(hdr), data) {
			return nil // torn header: nothing was ever acknowledged
		}
		return fmt.Errorf("%w: not a counters journal (no %q header)", errCorrupt, journalHeader)
	}
	data = data[len(hdr):]
	for n := 2; len(data) > 0; n++ {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return nil // torn final line
		}
		if err := s.replayLine(string(data[:i]), nowMs); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		data = data[i+1:]
	}
	return nil
}

func (s *MemoryStore) replayLine(line string, nowMs int64) error {
	sp := strings.LastIndexByte(line, ' ')
	if sp < 0 || len(line)-sp-1 != 8 {
		return fmt.Errorf("%w: no checksum", errCorrupt)
	}
	sum, err := strconv.ParseUint(line[sp+1:], 16, 32)
	if err != nil || uint32(sum) != crc32.Checksum([]byte(line[:sp]), castagnoli) {
		return fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	f := strings.Split(line[:sp], " ")
	switch {
	case f[0] == "t" && len(f) == 6:
		amount, err := parseAmount(f[5])
		if err != nil {
			return err
		}
		return s.replayDebit(f[1], f[2], f[3], f[4], amount)
	case f[0] == "x" && len(f) == 4:
		forget, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil || checkSlotID(f[1], f[2]) != nil {
			return fmt.Errorf("%w: bad settled-id line", errCorrupt)
		}
		s.remember(idKey{f[1], f[2]}, forget, nowMs)
		return nil
	case f[0] == "d" && len(f) >= 4 && (len(f)-4)%4 == 0:
		at, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || checkSlotID(f[2], f[3]) != nil {
			return fmt.Errorf("%w: bad settle line", errCorrupt)
		}
		for g := f[4:]; len(g) > 0; g = g[4:] {
			amount, err := parseAmount(g[3])
			if err != nil {
				return err
			}
			if err := s.replayDebit(f[2], g[0], g[1], g[2], amount); err != nil {
				return err
			}
		}
		s.remember(idKey{f[2], f[3]}, at+s.settledTTL, nowMs)
		return nil
	}
	return fmt.Errorf("%w: unknown record", errCorrupt)
}

func parseAmount(v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: bad amount %q", errCorrupt, v)
	}
	return n, nil
}

func (s *MemoryStore) replayDebit(slot, window, start, key string, amount int64) error {
	w := Window(window)
	st, err := strconv.ParseInt(start, 10, 64)
	if err != nil || !w.Valid() || !validName(slot, maxSlotLen, true) || !validName(key, maxKeyLen, false) {
		return fmt.Errorf("%w: bad counter", errCorrupt)
	}
	s0, end := w.bounds(st)
	if s0 != st {
		return fmt.Errorf("%w: %d is not a %s start", errCorrupt, st, w)
	}
	s.cell(cellKey{slot, key, w, st}, end).spent += amount
	return nil
}

func (s *MemoryStore) remember(k idKey, forget, nowMs int64) {
	if forget > nowMs && forget > s.settled[k] {
		s.settled[k] = forget
	}
}

// snapshotRecord is one line of a compacted journal: a window's total (key set) or a
// settled id.
type snapshotRecord struct {
	slot, key, id string
	window        Window
	start, n      int64 // n: spent, or when to forget the id
}

// snapshot lists what a compacted journal holds, and forgets windows that ended more than
// a day ago, empty ones and expired ids. s.mu must be held.
func (s *MemoryStore) snapshot(nowMs int64) []snapshotRecord {
	recs := make([]snapshotRecord, 0, len(s.cells)+len(s.settled))
	for k, c := range s.cells {
		c.purge(nowMs)
		if c.end != 0 && c.end*1000+dayMs <= nowMs || c.spent == 0 && c.reserved == 0 && len(c.holds) == 0 {
			delete(s.cells, k)
			continue
		}
		if c.spent != 0 {
			recs = append(recs, snapshotRecord{slot: k.slot, key: k.key, window: k.window, start: k.start, n: c.spent})
		}
	}
	for k, forget := range s.settled {
		if forget <= nowMs {
			delete(s.settled, k)
			continue
		}
		recs = append(recs, snapshotRecord{slot: k.slot, id: k.id, n: forget})
	}
	return recs
}

// writeSnapshot writes recs as a journal to a temporary file next to path and returns it,
// open at its end, with its size.
func writeSnapshot(path string, recs []snapshotRecord) (_ *os.File, size int64, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if err != nil {
			discard(tmp)
		}
	}()
	cw := &countingWriter{w: tmp}
	w := bufio.NewWriter(cw)
	w.WriteString(journalHeader + "\n")
	var b []byte
	for i := range recs {
		r := &recs[i]
		if r.key != "" {
			b = appendFields(append(b[:0], "t "...), r.slot, string(r.window))
			b = strconv.AppendInt(append(b, ' '), r.start, 10)
			b = appendFields(append(b, ' '), r.key)
		} else {
			b = appendFields(append(b[:0], "x "...), r.slot, r.id)
		}
		b = strconv.AppendInt(append(b, ' '), r.n, 10)
		w.Write(appendSum(b))
	}
	if err := w.Flush(); err != nil {
		return nil, 0, err
	}
	return tmp, cw.n, nil
}

// install makes tmp durable, renames it over path and returns an append handle on it.
// tmp is closed either way.
func install(tmp *os.File, path string) (*os.File, error) {
	if err := tmp.Sync(); err != nil {
		discard(tmp)
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return nil, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
}

func discard(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// compactOnline compacts the journal of a running store. The snapshot is taken under the
// lock and written outside it; the lines appended meanwhile are then copied into the new
// file under the lock, before it replaces the old one.
func (s *MemoryStore) compactOnline() error {
	s.mu.Lock()
	j := s.j
	if s.closed || j == nil || j.compacting || j.err != nil {
		s.mu.Unlock()
		return nil
	}
	j.compacting = true
	recs := s.snapshot(s.now().UnixMilli())
	off := j.size
	s.mu.Unlock()

	tmp, size, err := writeSnapshot(j.path, recs)

	s.mu.Lock()
	defer s.mu.Unlock()
	j.compacting = false
	if err == nil && s.closed {
		discard(tmp)
		return nil
	}
	if err == nil {
		var n int64
		n, err = copyTail(tmp, j.path, off, j.size)
		size += n
		if err != nil {
			discard(tmp)
		}
	}
	var f *os.File
	if err == nil {
		f, err = install(tmp, j.path)
	}
	if err != nil {
		j.compactAt = 2 * j.size // try again later, not on every Settle
		return fmt.Errorf("counters: compact journal: %w", err)
	}
	j.f.Close() // its lines are in the synced new file
	j.f, j.size, j.compactAt = f, size, max(j.minCompact, 4*size)
	j.compacted++
	return nil
}

// copyTail appends bytes [from, to) of the file at path to w.
func copyTail(w io.Writer, path string, from, to int64) (int64, error) {
	if from == to {
		return 0, nil
	}
	r, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n, err := io.Copy(w, io.NewSectionReader(r, from, to-from))
	if err == nil && n != to-from {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func appendFields(b []byte, fs ...string) []byte {
	for i, f := range fs {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f...)
	}
	return b
}

// appendSum appends " <crc32c hex>\n" to the line b.
func appendSum(b []byte) []byte {
	const hex = "0123456789abcdef"
	sum := crc32.Checksum(b, castagnoli)
	b = append(b, ' ')
	for shift := 28; shift >= 0; shift -= 4 {
		b = append(b, hex[sum>>uint(shift)&0xf])
	}
	return append(b, '\n')
}

// appendSettle writes one Settle's d line with a single write. A failed write is undone
// (truncated away) so the file never holds a torn line before a good one.
func (j *journal) appendSettle(nowMs int64, slot, id string, cs []Counter, actual map[Unit]int64) error {
	if j.err != nil {
		return j.err
	}
	b := strconv.AppendInt(append(j.buf[:0], "d "...), nowMs, 10)
	b = appendFields(append(b, ' '), slot, id)
	for i := range cs {
		c := &cs[i]
		amount := settleAmount(c, actual)
		if amount == 0 {
			continue
		}
		b = appendFields(append(b, ' '), string(c.Window))
		b = strconv.AppendInt(append(b, ' '), c.Start, 10)
		b = appendFields(append(b, ' '), c.Key)
		b = strconv.AppendInt(append(b, ' '), amount, 10)
	}
	b = appendSum(b)
	j.buf = b
	n, err := j.f.Write(b)
	if err != nil {
		if n > 0 {
			if terr := j.f.Truncate(j.size); terr != nil {
				j.err = fmt.Errorf("counters: journal %s holds a torn write that could not be undone: %w", j.path, terr)
			}
		}
		return fmt.Errorf("counters: journal write: %w", err)
	}
	j.size += int64(n)
	return nil
}

func (j *journal) close() error {
	err := errors.Join(j.f.Sync(), j.f.Close())
	j.lock.Close()
	if err != nil {
		return fmt.Errorf("counters: close journal: %w", err)
	}
	return nil
}
