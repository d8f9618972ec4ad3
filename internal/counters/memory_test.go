package counters

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func memoryStore(t *testing.T, now func() time.Time) Store {
	s, err := OpenMemory("", Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func journaledStore(t *testing.T, now func() time.Time) Store {
	s, err := OpenMemory(filepath.Join(t.TempDir(), "counters.journal"), Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMemoryContract(t *testing.T)          { contractTest(t, memoryStore) }
func TestMemoryJournaledContract(t *testing.T) { contractTest(t, journaledStore) }
func TestMemoryConcurrency(t *testing.T)       { concurrencyTest(t, memoryStore) }
func TestMemoryJournaledConcurrency(t *testing.T) {
	concurrencyTest(t, journaledStore)
}

// An online compaction racing 200 settles (tiny threshold, Sync on) loses no debit.
func TestMemoryConcurrencyWithOnlineCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counters.journal")
	var opened *MemoryStore
	usd, req := concurrencyTest(t, func(t *testing.T, now func() time.Time) Store {
		s, err := OpenMemory(path, Options{Now: now, Sync: true})
		if err != nil {
			t.Fatal(err)
		}
		s.j.compactAt, s.j.minCompact = 0, 0 // compact whenever the journal grew 4×
		opened = s
		return s
	})
	if n := opened.j.compacted; n < 2 {
		t.Fatalf("%d online compactions, want several", n)
	}
	clk := newClock(t0)
	s := openAt(t, path, clk)
	defer s.Close()
	wantUsage(t, s, concUSD, t0, usd, 0)
	wantUsage(t, s, concReq, t0, req, 0)
}

func TestMemoryOnlineCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counters.journal")
	clk := newClock(t0)
	s := openAt(t, path, clk)
	s.mu.Lock()
	s.j.compactAt, s.j.minCompact = 0, 0
	s.mu.Unlock()
	c := ctr("rl:tpm", WindowMinute, UnitTokens, 1e6, 10, true)
	for i := range 5 {
		id := fmt.Sprint("r", i)
		adm := reserve(t, s, id, c)
		s.mu.Lock()
		s.j.compactAt = 0 // this Settle compacts
		s.mu.Unlock()
		settle(t, s, id, adm.Counters, nil)
		clk.Advance(time.Minute)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "\nd ") || strings.Count(string(data), "\nt ") != 5 || strings.Count(string(data), "\nx ") != 5 {
		t.Fatalf("journal after online compactions:\n%s", data)
	}
	s.mu.Lock()
	compactAt := s.j.compactAt
	s.mu.Unlock()
	if compactAt != 4*int64(len(data)) {
		t.Fatalf("compactAt = %d, want 4×%d", compactAt, len(data))
	}
	s.Close()
	s = openAt(t, path, clk)
	defer s.Close()
	wantUsage(t, s, c, t0, 10, 0)
	wantUsage(t, s, c, t0.Add(4*time.Minute), 10, 0)
	if _, err := s.Reserve(context.Background(), slot, "r3", []Counter{c}); !errors.Is(err, ErrIDReused) {
		t.Fatalf("Reserve of a settled id after compaction: %v", err)
	}
}

func openAt(t *testing.T, path string, clk *fakeClock) *MemoryStore {
	t.Helper()
	s, err := OpenMemory(path, Options{Now: clk.Now})
	if err != nil {
		t.Fatalf("OpenMemory: %v", err)
	}
	return s
}

func TestMemoryPersistsSettledSpend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counters.journal")
	clk := newClock(t0)
	s := openAt(t, path, clk)
	usd := ctr("b:usd", WindowMonth, UnitNanoUSD, 1e9, 500, true)
	tok := ctr("rl:tpd", WindowDay, UnitTokens, 1e6, 100, true)
	adm1 := reserve(t, s, "r1", usd, tok)
	settle(t, s, "r1", adm1.Counters, map[Unit]int64{UnitNanoUSD: 420, UnitTokens: 90})
	adm2 := reserve(t, s, "r2", usd, tok) // never settled before the restart
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(context.Background(), slot, "r3", []Counter{usd}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Reserve after Close: %v, want ErrClosed", err)
	}

	s = openAt(t, path, clk)
	wantUsage(t, s, usd, t0, 420, 0) // holds die with the process
	wantUsage(t, s, tok, t0, 90, 0)
	// Settled ids survive the restart: no double debit.
	settle(t, s, "r1", adm1.Counters, map[Unit]int64{UnitNanoUSD: 420, UnitTokens: 90})
	// A hold lost in the restart is still debited when its request ends.
	settle(t, s, "r2", adm2.Counters, map[Unit]int64{UnitNanoUSD: 7, UnitTokens: 0})
	wantUsage(t, s, usd, t0, 427, 0)
	wantUsage(t, s, tok, t0, 90, 0)
	s.Close()

	s = openAt(t, path, clk) // reopening a compacted journal
	defer s.Close()
	wantUsage(t, s, usd, t0, 427, 0)
	wantUsage(t, s, tok, t0, 90, 0)
	if _, err := s.Reserve(context.Background(), slot, "r2", []Counter{usd}); !errors.Is(err, ErrIDReused) {
		t.Fatalf("Reserve of an id settled before a restart: %v, want ErrIDReused", err)
	}
}

func TestMemoryJournalFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counters.journal")
	clk := newClock(t0)
	s := openAt(t, path, clk)
	defer s.Close()
	cs := []Counter{
		ctr("rl:rpm", WindowMinute, UnitRequests, 10, 1, true),
		ctr("rl:tpm", WindowMinute, UnitTokens, 1000, 50, true),
		ctr("b:usd", WindowTotal, UnitNanoUSD, 1e9, 300, false),
	}
	adm := reserve(t, s, "req_1", cs...)
	settle(t, s, "req_1", adm.Counters, map[Unit]int64{UnitTokens: 0, UnitNanoUSD: 250})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("d %d org_1 req_1 minute %d rl:rpm 1 total 0 b:usd 250", t0.UnixMilli(), t0.Truncate(time.Minute).Unix())
	want := journalHeader + "\n" + string(appendSum([]byte(line)))
	if string(data) != want {
		t.Fatalf("journal =\n%s\nwant\n%s", data, want)
	}
}

func TestMemoryJournalTornTail(t *testing.T) {
	clk := newClock(t0)
	c := ctr("b:usd", WindowDay, UnitNanoUSD, 1e9, 10, true)
	for name, tail := range map[string]string{
		"cut line":      "d 17",
		"cut checksum":  "d 1773232215000 org_1 r9 day 1773187200 b:usd 5 0badc0",
		"zeroed blocks": "\x00\x00\x00\x00\x00\x00",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "counters.journal")
			s := openAt(t, path, clk)
			adm := reserve(t, s, "r1", c)
			settle(t, s, "r1", adm.Counters, nil)
			s.Close()
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(tail) // a crash mid-write: no newline
			f.Close()

			s = openAt(t, path, clk)
			wantUsage(t, s, c, t0, 10, 0)
			// The compaction at open dropped the torn tail, so later appends stay well formed.
			adm = reserve(t, s, "r2", c)
			settle(t, s, "r2", adm.Counters, nil)
			s.Close()
			s = openAt(t, path, clk)
			defer s.Close()
			wantUsage(t, s, c, t0, 20, 0)
		})
	}
}

func TestMemoryJournalCorruptionFailsOpen(t *testing.T) {
	clk := newClock(t0)
	c := ctr("b:usd", WindowDay, UnitNanoUSD, 1e9, 10, true)
	write := func(t *testing.T) (string, []byte) {
		path := filepath.Join(t.TempDir(), "counters.journal")
		s := openAt(t, path, clk)
		for i := range 3 {
			id := fmt.Sprint("r", i)
			adm := reserve(t, s, id, c)
			settle(t, s, id, adm.Counters, nil)
		}
		s.Close()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return path, data
	}
	for name, damage := range map[string]func([]byte) []byte{
		"flipped digit": func(b []byte) []byte {
			i := bytes.Index(b, []byte(" 10 ")) // the amount of a middle line
			b[i+1] = '9'
			return b
		},
		"garbage line": func(b []byte) []byte {
			return append(b, "hello world\n"...)
		},
		"bad line before a good one": func(b []byte) []byte {
			lines := strings.SplitAfter(string(b), "\n")
			return []byte(lines[0] + "d 1 x\n" + strings.Join(lines[1:], ""))
		},
		"not a journal": func([]byte) []byte { return []byte("some other file\n") },
	} {
		t.Run(name, func(t *testing.T) {
			path, data := write(t)
			bad := damage(bytes.Clone(data))
			os.WriteFile(path, bad, 0o600)
			if s, err := OpenMemory(path, Options{Now: clk.Now}); err == nil {
				s.Close()
				t.Fatal("OpenMemory accepted a corrupt journal")
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, bad) {
				t.Fatal("a failed open rewrote the journal")
			}
		})
	}
}

func TestMemoryCompactionDropsOldWindows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counters.journal")
	clk := newClock(t0)
	s := openAt(t, path, clk)
	rpm := ctr("rl:rpm", WindowMinute, UnitRequests, 10, 1, true)
	total := ctr("b:total", WindowTotal, UnitNanoUSD, 1e9, 5, true)
	adm := reserve(t, s, "r1", rpm, total)
	settle(t, s, "r1", adm.Counters, nil)
	s.Close()

	clk.Advance(24*time.Hour + 2*time.Minute) // the minute window ended over a day ago
	s = openAt(t, path, clk)
	s.Close()
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "minute") || !strings.Contains(string(data), "b:total") {
		t.Fatalf("compacted journal:\n%s", data)
	}
	s = openAt(t, path, clk)
	defer s.Close()
	wantUsage(t, s, total, t0, 5, 0)
	wantUsage(t, s, rpm, t0, 0, 0)
}

func TestMemoryJournalIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counters.journal")
	s, err := OpenMemory(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := OpenMemory(path, Options{}); !errors.Is(err, ErrLocked) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("second OpenMemory: %v, want ErrLocked", err)
	}
}

func TestMemorySweepForgetsOldState(t *testing.T) {
	clk := newClock(t0)
	s, err := OpenMemory("", Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rpm := ctr("rl:rpm", WindowMinute, UnitRequests, 10, 1, true)
	for i := range 100 {
		id := fmt.Sprint("r", i)
		adm := reserve(t, s, id, rpm)
		settle(t, s, id, adm.Counters, nil)
		clk.Advance(time.Minute)
	}
	clk.Advance(49 * time.Hour)
	reserve(t, s, "last", rpm)
	s.mu.Lock()
	cells, settled := len(s.cells), len(s.settled)
	s.mu.Unlock()
	if cells != 1 || settled != 0 {
		t.Fatalf("after the sweep: %d cells, %d settled ids; want 1 and 0", cells, settled)
	}
}

// BenchmarkMemoryReserveSettle measures one admission against three counters and its
// settle, the per-request cost of the in-process store.
func BenchmarkMemoryReserveSettle(b *testing.B) {
	for _, journaled := range []bool{false, true} {
		b.Run(fmt.Sprintf("journal=%v", journaled), func(b *testing.B) {
			clk := newClock(t0)
			path := ""
			if journaled {
				path = filepath.Join(b.TempDir(), "counters.journal")
			}
			s, err := OpenMemory(path, Options{Now: clk.Now, SettledTTL: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			cs := []Counter{
				ctr("rl:vk_1:rpm", WindowMinute, UnitRequests, 1<<62, 1, true),
				ctr("rl:vk_1:tpm", WindowMinute, UnitTokens, 1<<62, 1000, true),
				ctr("b:bg_1", WindowMonth, UnitNanoUSD, 1<<62, 50000, true),
			}
			ids := make([]string, 1<<12)
			for i := range ids {
				ids[i] = fmt.Sprint("req_", i)
			}
			actual := map[Unit]int64{UnitTokens: 700, UnitNanoUSD: 31000}
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				clk.Advance(time.Millisecond) // ids come back after SettledTTL
				id := ids[i%len(ids)]
				i++
				adm, err := s.Reserve(ctx, slot, id, cs)
				if err != nil || !adm.OK {
					b.Fatal(adm, err)
				}
				if err := s.Settle(ctx, slot, id, adm.Counters, actual); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
