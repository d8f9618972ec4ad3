package breaker

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a fake clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newSet returns a Set on a fake clock with the default timings and a threshold of 3.
func newSet(t *testing.T) (*Set, *clock) {
	t.Helper()
	c := newClock()
	return New(Config{Threshold: 3, Now: c.Now}), c
}

// allow calls s.Allow and fails the test if the answer is not want.
func allow(t *testing.T, s *Set, id string, want bool) Permit {
	t.Helper()
	p, ok := s.Allow(id)
	if ok != want {
		t.Fatalf("Allow(%q) = %v, want %v (state %v)", id, ok, want, s.State(id))
	}
	return p
}

func wantState(t *testing.T, s *Set, id string, want State) {
	t.Helper()
	if got := s.State(id); got != want {
		t.Fatalf("State(%q) = %v, want %v", id, got, want)
	}
}

// fail records n failures of id, each after advancing the clock by gap.
func fail(t *testing.T, s *Set, c *clock, id string, n int, gap time.Duration) {
	t.Helper()
	for range n {
		c.Advance(gap)
		allow(t, s, id, true).Record(Failure)
	}
}

// open drives id's circuit open.
func open(t *testing.T, s *Set, c *clock, id string) {
	t.Helper()
	fail(t, s, c, id, 3, time.Second)
	wantState(t, s, id, Open)
}

func TestOpensAfterThresholdFailuresInWindow(t *testing.T) {
	s, c := newSet(t)
	fail(t, s, c, "a", 2, 10*time.Second)
	wantState(t, s, "a", Closed)
	allow(t, s, "a", true).Record(Success) // successes do not reset the window
	fail(t, s, c, "a", 1, 10*time.Second)  // third failure, 20 s after the first
	wantState(t, s, "a", Open)
	allow(t, s, "a", false)
}

func TestFailuresSpreadBeyondWindowDoNotOpen(t *testing.T) {
	s, c := newSet(t)
	// 15 s apart: any three span 30 s, which is not within the 30 s window.
	fail(t, s, c, "a", 10, 15*time.Second)
	wantState(t, s, "a", Closed)
	// One second closer and the last three span 29 s.
	fail(t, s, c, "a", 1, 14*time.Second)
	wantState(t, s, "a", Open)
}

func TestThresholdOne(t *testing.T) {
	c := newClock()
	s := New(Config{Threshold: 1, Now: c.Now})
	allow(t, s, "a", true).Record(Failure)
	wantState(t, s, "a", Open)
}

func TestNonFailuresNeverOpen(t *testing.T) {
	s, _ := newSet(t)
	for _, o := range []Outcome{RateLimited, Neutral, Success} {
		for range 100 {
			allow(t, s, "a", true).Record(o)
		}
	}
	wantState(t, s, "a", Closed)
}

func TestRetryAfterPausesProvider(t *testing.T) {
	s, c := newSet(t)
	allow(t, s, "a", true).RecordRateLimited(c.Now().Add(10 * time.Second))
	allow(t, s, "a", false)
	allow(t, s, "b", true) // other providers are unaffected
	wantState(t, s, "a", Closed)
	c.Advance(9 * time.Second)
	allow(t, s, "a", false)
	c.Advance(time.Second)
	allow(t, s, "a", true)
	wantState(t, s, "a", Closed)
}

func TestRetryAfterIsCapped(t *testing.T) {
	s, c := newSet(t)
	allow(t, s, "a", true).RecordRateLimited(c.Now().Add(24 * time.Hour))
	c.Advance(59 * time.Second)
	allow(t, s, "a", false)
	c.Advance(time.Second)
	allow(t, s, "a", true)
}

func TestRetryAfterNeverShortens(t *testing.T) {
	s, c := newSet(t)
	p1 := allow(t, s, "a", true)
	p2 := allow(t, s, "a", true)
	p1.RecordRateLimited(c.Now().Add(20 * time.Second))
	p2.RecordRateLimited(c.Now().Add(5 * time.Second))
	p2.RecordRateLimited(time.Time{}) // no usable header
	c.Advance(10 * time.Second)
	allow(t, s, "a", false)
	c.Advance(10 * time.Second)
	allow(t, s, "a", true)
}

func TestRetryAfterInThePastDoesNotPause(t *testing.T) {
	s, c := newSet(t)
	allow(t, s, "a", true).RecordRateLimited(c.Now().Add(-time.Second))
	allow(t, s, "a", true)
}

func TestOpenRejectsForCooldownThenOneProbe(t *testing.T) {
	s, c := newSet(t)
	open(t, s, c, "a")
	c.Advance(30*time.Second - 1)
	allow(t, s, "a", false)
	c.Advance(1)

	const n = 100
	var (
		start  = make(chan struct{})
		wg     sync.WaitGroup
		allows atomic.Int32
		probe  Permit
	)
	for range n {
		wg.Go(func() {
			<-start
			if p, ok := s.Allow("a"); ok {
				allows.Add(1)
				probe = p
			}
		})
	}
	close(start)
	wg.Wait()
	if got := allows.Load(); got != 1 {
		t.Fatalf("%d of %d concurrent Allow calls got a permit after cooldown, want 1", got, n)
	}
	wantState(t, s, "a", HalfOpen)
	allow(t, s, "a", false)

	probe.Record(Success)
	wantState(t, s, "a", Closed)
	// The window was reset: two more failures do not reopen it.
	fail(t, s, c, "a", 2, time.Second)
	wantState(t, s, "a", Closed)
}

func TestFailedProbeReopens(t *testing.T) {
	s, c := newSet(t)
	open(t, s, c, "a")
	c.Advance(30 * time.Second)
	allow(t, s, "a", true).Record(Failure)
	wantState(t, s, "a", Open)
	c.Advance(30*time.Second - 1)
	allow(t, s, "a", false)
	c.Advance(1)
	allow(t, s, "a", true).Record(Success)
	wantState(t, s, "a", Closed)
}

func TestNeutralProbeFreesSlot(t *testing.T) {
	for name, o := range map[string]Outcome{"neutral": Neutral, "rate_limited": RateLimited} {
		t.Run(name, func(t *testing.T) {
			s, c := newSet(t)
			open(t, s, c, "a")
			c.Advance(30 * time.Second)
			p := allow(t, s, "a", true)
			allow(t, s, "a", false)
			p.Record(o)
			wantState(t, s, "a", HalfOpen)
			p.Record(Success) // a second record on a released probe is ignored
			wantState(t, s, "a", HalfOpen)
			allow(t, s, "a", true).Record(Success)
			wantState(t, s, "a", Closed)
		})
	}
}

func TestRateLimitedProbePausesBeforeFreeingSlot(t *testing.T) {
	s, c := newSet(t)
	open(t, s, c, "a")
	c.Advance(30 * time.Second)
	allow(t, s, "a", true).RecordRateLimited(c.Now().Add(5 * time.Second))
	wantState(t, s, "a", HalfOpen)
	allow(t, s, "a", false)
	c.Advance(5 * time.Second)
	allow(t, s, "a", true).Record(Success)
	wantState(t, s, "a", Closed)
}

func TestLostProbeTimesOut(t *testing.T) {
	s, c := newSet(t)
	open(t, s, c, "a")
	c.Advance(30 * time.Second)
	lost := allow(t, s, "a", true)
	c.Advance(30*time.Second - 1)
	allow(t, s, "a", false)
	c.Advance(1)
	p := allow(t, s, "a", true)
	lost.Record(Failure) // stale: its slot was handed on
	wantState(t, s, "a", HalfOpen)
	p.Record(Success)
	wantState(t, s, "a", Closed)
}

func TestStaleOutcomesIgnored(t *testing.T) {
	s, c := newSet(t)
	late := allow(t, s, "a", true) // in flight while the circuit opens and closes again
	open(t, s, c, "a")
	late.Record(Failure)
	c.Advance(30 * time.Second)
	allow(t, s, "a", true).Record(Success)
	fail(t, s, c, "a", 2, time.Second)
	late.Record(Failure) // would be the third failure of the new closed period
	wantState(t, s, "a", Closed)
	Permit{}.Record(Failure)
	Permit{}.RecordRateLimited(c.Now().Add(time.Second))
}

func TestOnChangeOrder(t *testing.T) {
	c := newClock()
	var (
		mu  sync.Mutex
		got []string
	)
	s := New(Config{Threshold: 2, Now: c.Now, OnChange: func(id string, from, to State) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("%s:%v>%v", id, from, to))
	}})
	allow(t, s, "a", true).Record(Failure)
	allow(t, s, "a", true).Record(Failure)
	c.Advance(30 * time.Second)
	p := allow(t, s, "a", true)
	p.Record(Neutral) // frees the slot; no transition
	allow(t, s, "a", true).Record(Failure)
	c.Advance(30 * time.Second)
	allow(t, s, "a", true).Record(Success)

	want := []string{
		"a:closed>open", "a:open>half-open", "a:half-open>open",
		"a:open>half-open", "a:half-open>closed",
	}
	if !slices.Equal(got, want) {
		t.Errorf("OnChange calls:\n got %q\nwant %q", got, want)
	}
}

func TestForget(t *testing.T) {
	s, c := newSet(t)
	open(t, s, c, "a")
	open(t, s, c, "b")
	s.Forget(func(id string) bool { return id == "b" })
	wantState(t, s, "a", Closed)
	wantState(t, s, "b", Open)
	allow(t, s, "a", true)
	wantState(t, s, "never-seen", Closed)
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Closed: "closed", HalfOpen: "half-open", Open: "open", 7: "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", s, got, want)
		}
	}
}

// TestConcurrentChurn runs every operation at once so the race detector sees them interleave.
func TestConcurrentChurn(t *testing.T) {
	c := newClock()
	s := New(Config{Threshold: 2, Window: time.Second, Cooldown: time.Millisecond, Now: c.Now,
		OnChange: func(string, State, State) {}})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 2000 {
				id := fmt.Sprint("p", i%3)
				if p, ok := s.Allow(id); ok {
					switch (g + i) % 5 {
					case 0, 1:
						p.Record(Failure)
					case 2:
						p.RecordRateLimited(c.Now().Add(time.Microsecond))
					case 3:
						p.Record(Neutral)
					default:
						p.Record(Success)
					}
				}
				if i%97 == 0 {
					c.Advance(time.Millisecond)
				}
				if g == 0 && i%500 == 0 {
					s.Forget(func(id string) bool { return id != "p2" })
				}
				s.State(id)
			}
		})
	}
	wg.Wait()
}

func TestAllowRecordDoesNotAllocate(t *testing.T) {
	s, c := newSet(t)
	allow(t, s, "a", true).Record(Success) // create the breaker
	allocs := testing.AllocsPerRun(1000, func() {
		p, _ := s.Allow("a")
		p.Record(Success)
		p, _ = s.Allow("a")
		p.Record(RateLimited)
	})
	if allocs != 0 {
		t.Errorf("Allow+Record allocated %v times per run, want 0", allocs)
	}
	allow(t, s, "a", true).RecordRateLimited(c.Now().Add(time.Second))
	allocs = testing.AllocsPerRun(1000, func() { s.Allow("a") })
	if allocs != 0 {
		t.Errorf("Allow on a paused provider allocated %v times per run, want 0", allocs)
	}
}

// BenchmarkAllowRecord measures the hot path: a closed circuit, many goroutines, one provider.
//
//	go test -run='^$' -bench=AllowRecord -count=10 ./dispatcher/breaker/ | tee new.txt
//	benchstat old.txt new.txt
func BenchmarkAllowRecord(b *testing.B) {
	s := New(Config{})
	for _, id := range []string{"openai", "anthropic", "bedrock"} {
		p, _ := s.Allow(id)
		p.Record(Success)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, ok := s.Allow("anthropic")
			if !ok {
				b.Error("Allow refused a closed provider")
				return
			}
			p.Record(Success)
		}
	})
}

func TestPausedFor(t *testing.T) {
	now := time.Unix(1000, 0)
	s := New(Config{Now: func() time.Time { return now }})
	if s.PausedFor("p") != 0 {
		t.Fatal("unknown provider paused")
	}
	p, _ := s.Allow("p")
	p.RecordRateLimited(now.Add(20 * time.Second))
	if d := s.PausedFor("p"); d != 20*time.Second {
		t.Fatalf("PausedFor = %v, want 20s", d)
	}
	now = now.Add(25 * time.Second)
	if d := s.PausedFor("p"); d != 0 {
		t.Fatalf("after the pause: %v", d)
	}
}
