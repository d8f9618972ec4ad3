package counters

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is an injectable clock the tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// newStoreFunc opens a fresh, empty store on the given clock with default options.
type newStoreFunc func(t *testing.T, now func() time.Time) Store

// t0 is a Wednesday.
var t0 = time.Date(2026, 3, 11, 12, 30, 15, 0, time.UTC)

const slot = "org_1"

func reserve(t *testing.T, s Store, id string, cs ...Counter) Admission {
	t.Helper()
	adm, err := s.Reserve(context.Background(), slot, id, cs)
	if err != nil {
		t.Fatalf("Reserve(%s): %v", id, err)
	}
	if len(adm.Counters) != len(cs) || len(adm.Committed) != len(cs) {
		t.Fatalf("Reserve(%s) = %+v: wrong lengths", id, adm)
	}
	return adm
}

func mustOK(t *testing.T, adm Admission, committed ...int64) {
	t.Helper()
	if !adm.OK || adm.Denied != -1 || adm.RetryAfter != 0 {
		t.Fatalf("admission = %+v, want OK", adm)
	}
	if !slices.Equal(adm.Committed, committed) {
		t.Fatalf("Committed = %v, want %v", adm.Committed, committed)
	}
}

func mustDeny(t *testing.T, adm Admission, denied int, retry time.Duration, committed ...int64) {
	t.Helper()
	if adm.OK || adm.Denied != denied || adm.RetryAfter != retry {
		t.Fatalf("admission = {OK:%v Denied:%d RetryAfter:%v}, want denied at %d after %v", adm.OK, adm.Denied, adm.RetryAfter, denied, retry)
	}
	if !slices.Equal(adm.Committed, committed) {
		t.Fatalf("Committed = %v, want %v", adm.Committed, committed)
	}
}

func settle(t *testing.T, s Store, id string, cs []Counter, actual map[Unit]int64) {
	t.Helper()
	if err := s.Settle(context.Background(), slot, id, cs, actual); err != nil {
		t.Fatalf("Settle(%s): %v", id, err)
	}
}

func release(t *testing.T, s Store, id string, cs []Counter) {
	t.Helper()
	if err := s.Release(context.Background(), slot, id, cs); err != nil {
		t.Fatalf("Release(%s): %v", id, err)
	}
}

func wantUsage(t *testing.T, s Store, c Counter, at time.Time, spent, reserved int64) {
	t.Helper()
	gotS, gotR, err := s.Usage(context.Background(), slot, c, at)
	if err != nil {
		t.Fatalf("Usage(%s): %v", c.Key, err)
	}
	if gotS != spent || gotR != reserved {
		t.Fatalf("Usage(%s %s at %v) = spent %d reserved %d, want %d %d", c.Key, c.Window, at, gotS, gotR, spent, reserved)
	}
}

func ctr(key string, w Window, u Unit, limit, amount int64, block bool) Counter {
	return Counter{Key: key, Window: w, Unit: u, Limit: limit, Amount: amount, Block: block}
}

// contractTest is the behaviour both Store implementations share.
func contractTest(t *testing.T, newStore newStoreFunc) {
	open := func(t *testing.T, start time.Time) (Store, *fakeClock) {
		clk := newClock(start)
		s := newStore(t, clk.Now)
		t.Cleanup(func() { s.Close() })
		return s, clk
	}

	t.Run("ReserveWithinLimitThenDeny", func(t *testing.T) {
		s, _ := open(t, t0)
		rpm := ctr("rl:vk_1:rpm", WindowMinute, UnitRequests, 3, 1, true)
		for i := range 3 {
			adm := reserve(t, s, fmt.Sprint("r", i), rpm)
			mustOK(t, adm, int64(i+1))
			if got, want := adm.Counters[0].Start, t0.Truncate(time.Minute).Unix(); got != want {
				t.Fatalf("Start = %d, want %d", got, want)
			}
		}
		mustDeny(t, reserve(t, s, "r3", rpm), 0, 45*time.Second, 3)
		wantUsage(t, s, rpm, t0, 0, 3)
	})

	t.Run("DenialReportsFirstRefusalAndChangesNothing", func(t *testing.T) {
		s, _ := open(t, t0)
		cs := []Counter{
			ctr("b:warn", WindowMonth, UnitNanoUSD, 10, 100, false),
			ctr("rl:tpd", WindowDay, UnitTokens, 1000, 400, true),
			ctr("b:usd", WindowDay, UnitNanoUSD, 500, 600, true),
			ctr("rl:never", WindowHour, UnitRequests, 0, 1, true),
		}
		mustOK(t, reserve(t, s, "r0", cs[1]), 400)
		mustDeny(t, reserve(t, s, "r1", cs...), 2, 11*time.Hour+29*time.Minute+45*time.Second, 0, 400, 0, 0)
		wantUsage(t, s, cs[0], t0, 0, 0)
		wantUsage(t, s, cs[1], t0, 0, 400)
		wantUsage(t, s, cs[2], t0, 0, 0)
		wantUsage(t, s, cs[3], t0, 0, 0)
		// The denial held nothing under r1: it can still be admitted.
		small := cs[1]
		small.Amount = 600
		mustOK(t, reserve(t, s, "r1", small), 1000)
		mustDeny(t, reserve(t, s, "r2", cs[3]), 0, 29*time.Minute+45*time.Second, 0)
	})

	t.Run("WarnCountersCountButNeverDeny", func(t *testing.T) {
		s, _ := open(t, t0)
		warn := ctr("b:warn", WindowMonth, UnitNanoUSD, 10, 50, false)
		mustOK(t, reserve(t, s, "r1", warn), 50)
		mustOK(t, reserve(t, s, "r2", warn), 100)
		wantUsage(t, s, warn, t0, 0, 100)
	})

	t.Run("SettleMovesReservedToSpentPerUnit", func(t *testing.T) {
		s, _ := open(t, t0)
		cs := []Counter{
			ctr("rl:rpd", WindowDay, UnitRequests, 100, 1, true),
			ctr("rl:tpd", WindowDay, UnitTokens, 100000, 1000, true),
			ctr("b:usd", WindowMonth, UnitNanoUSD, 1e12, 5000, true),
		}
		adm := reserve(t, s, "r1", cs...)
		mustOK(t, adm, 1, 1000, 5000)
		settle(t, s, "r1", adm.Counters, map[Unit]int64{UnitTokens: 700, UnitNanoUSD: 3200})
		wantUsage(t, s, cs[0], t0, 1, 0)
		wantUsage(t, s, cs[1], t0, 700, 0)
		wantUsage(t, s, cs[2], t0, 3200, 0)

		// Exactly once: neither a second Settle nor a Release changes anything.
		settle(t, s, "r1", adm.Counters, map[Unit]int64{UnitRequests: 5, UnitTokens: 9999, UnitNanoUSD: 9999})
		release(t, s, "r1", adm.Counters)
		wantUsage(t, s, cs[0], t0, 1, 0)
		wantUsage(t, s, cs[1], t0, 700, 0)
		wantUsage(t, s, cs[2], t0, 3200, 0)

		// A settled id can't hold again.
		if _, err := s.Reserve(context.Background(), slot, "r1", cs); !errors.Is(err, ErrIDReused) {
			t.Fatalf("Reserve of a settled id: err = %v, want ErrIDReused", err)
		}
		// Committed counts spent and reserved.
		mustOK(t, reserve(t, s, "r2", cs...), 2, 1700, 8200)
	})

	t.Run("ActualAboveReservedIsDebited", func(t *testing.T) {
		s, _ := open(t, t0)
		c := ctr("rl:tpd", WindowDay, UnitTokens, 1000, 100, true)
		adm := reserve(t, s, "r1", c)
		settle(t, s, "r1", adm.Counters, map[Unit]int64{UnitTokens: 1500})
		wantUsage(t, s, c, t0, 1500, 0)
		mustDeny(t, reserve(t, s, "r2", c), 0, 11*time.Hour+29*time.Minute+45*time.Second, 1500)
	})

	t.Run("ReleaseKeepsRequestsCounted", func(t *testing.T) {
		s, _ := open(t, t0)
		cs := []Counter{
			ctr("rl:rpm", WindowMinute, UnitRequests, 10, 1, true),
			ctr("rl:tpm", WindowMinute, UnitTokens, 10000, 800, true),
			ctr("b:usd", WindowTotal, UnitNanoUSD, 1e9, 4000, true),
		}
		adm := reserve(t, s, "r1", cs...)
		release(t, s, "r1", adm.Counters)
		wantUsage(t, s, cs[0], t0, 1, 0)
		wantUsage(t, s, cs[1], t0, 0, 0)
		wantUsage(t, s, cs[2], t0, 0, 0)
		settle(t, s, "r1", adm.Counters, map[Unit]int64{UnitTokens: 800, UnitNanoUSD: 4000})
		wantUsage(t, s, cs[1], t0, 0, 0)
		wantUsage(t, s, cs[2], t0, 0, 0)
	})

	t.Run("ReserveIsIdempotentPerID", func(t *testing.T) {
		s, _ := open(t, t0)
		c := ctr("rl:tpd", WindowDay, UnitTokens, 1000, 600, true)
		mustOK(t, reserve(t, s, "r1", c), 600)
		// A retried Reserve neither reserves twice nor is refused by its own hold.
		mustOK(t, reserve(t, s, "r1", c), 600)
		wantUsage(t, s, c, t0, 0, 600)
		// A second counter joins the existing hold.
		c2 := ctr("rl:rpd", WindowDay, UnitRequests, 5, 1, true)
		adm := reserve(t, s, "r1", c, c2)
		mustOK(t, adm, 600, 1)
		settle(t, s, "r1", adm.Counters, map[Unit]int64{UnitTokens: 10})
		wantUsage(t, s, c, t0, 10, 0)
		wantUsage(t, s, c2, t0, 1, 0)
	})

	t.Run("ExpiredHoldsStopCountingAndSettleStillDebitsOnce", func(t *testing.T) {
		s, clk := open(t, t0)
		c := ctr("b:usd", WindowDay, UnitNanoUSD, 1000, 800, true)
		adm := reserve(t, s, "r1", c)
		mustOK(t, adm, 800)
		big := c
		big.Amount = 600
		mustDeny(t, reserve(t, s, "r2", big), 0, 11*time.Hour+29*time.Minute+45*time.Second, 800)

		clk.Advance(time.Hour - time.Millisecond)
		wantUsage(t, s, c, clk.Now(), 0, 800)
		clk.Advance(time.Millisecond) // the default HoldTTL has passed
		wantUsage(t, s, c, clk.Now(), 0, 0)
		adm2 := reserve(t, s, "r2", big)
		mustOK(t, adm2, 600)

		// The late Settle of the expired hold still debits, once, and leaves r2's hold.
		settle(t, s, "r1", adm.Counters, map[Unit]int64{UnitNanoUSD: 300})
		wantUsage(t, s, c, clk.Now(), 300, 600)
		settle(t, s, "r1", adm.Counters, map[Unit]int64{UnitNanoUSD: 300})
		release(t, s, "r1", adm.Counters)
		wantUsage(t, s, c, clk.Now(), 300, 600)
		settle(t, s, "r2", adm2.Counters, map[Unit]int64{UnitNanoUSD: 600})
		wantUsage(t, s, c, clk.Now(), 900, 0)
	})

	t.Run("SettleWithoutHoldDebitsOnce", func(t *testing.T) {
		s, _ := open(t, t0)
		c := ctr("b:usd", WindowMonth, UnitNanoUSD, 1000, 50, true)
		c.Start = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC).Unix()
		// A request admitted while the store was unavailable (fail open) is still billed.
		settle(t, s, "r1", []Counter{c}, map[Unit]int64{UnitNanoUSD: 70})
		settle(t, s, "r1", []Counter{c}, map[Unit]int64{UnitNanoUSD: 70})
		wantUsage(t, s, c, t0, 70, 0)
	})

	t.Run("SettleLandsInTheReservedWindow", func(t *testing.T) {
		s, clk := open(t, time.Date(2026, 3, 11, 12, 30, 50, 0, time.UTC))
		c := ctr("rl:tpm", WindowMinute, UnitTokens, 100, 5, true)
		adm := reserve(t, s, "r1", c)
		clk.Set(time.Date(2026, 3, 11, 12, 31, 10, 0, time.UTC))
		adm2 := reserve(t, s, "r2", c)
		mustOK(t, adm2, 5)
		if adm2.Counters[0].Start-adm.Counters[0].Start != 60 {
			t.Fatalf("Starts %d, %d: want consecutive minutes", adm.Counters[0].Start, adm2.Counters[0].Start)
		}
		settle(t, s, "r1", adm.Counters, map[Unit]int64{UnitTokens: 4})
		wantUsage(t, s, c, time.Date(2026, 3, 11, 12, 30, 0, 0, time.UTC), 4, 0)
		wantUsage(t, s, c, clk.Now(), 0, 5)
	})

	t.Run("WindowRollover", func(t *testing.T) {
		for _, tc := range []struct {
			w        Window
			at, next time.Time // at is shortly before the boundary next
		}{
			{WindowMinute, time.Date(2026, 3, 11, 12, 30, 50, 0, time.UTC), time.Date(2026, 3, 11, 12, 31, 0, 0, time.UTC)},
			{WindowHour, time.Date(2026, 3, 11, 12, 59, 59, 500e6, time.UTC), time.Date(2026, 3, 11, 13, 0, 0, 0, time.UTC)},
			{WindowDay, time.Date(2026, 3, 11, 23, 59, 59, 0, time.UTC), time.Date(2026, 3, 12, 0, 0, 0, 0, time.UTC)},
			// Sunday 23:59 → Monday 00:00.
			{WindowWeek, time.Date(2026, 3, 15, 23, 59, 0, 0, time.UTC), time.Date(2026, 3, 16, 0, 0, 0, 0, time.UTC)},
			{WindowMonth, time.Date(2026, 2, 28, 23, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
			{WindowMonth, time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		} {
			t.Run(fmt.Sprintf("%s/%s", tc.w, tc.next.Format("2006-01-02T15:04")), func(t *testing.T) {
				s, clk := open(t, tc.at)
				c := ctr("rl:x", tc.w, UnitRequests, 2, 2, true)
				adm := reserve(t, s, "r1", c)
				mustOK(t, adm, 2)
				if want, _ := tc.w.Bounds(tc.at); adm.Counters[0].Start != want.Unix() {
					t.Fatalf("Start = %v, want %v", time.Unix(adm.Counters[0].Start, 0).UTC(), want)
				}
				c.Amount = 1
				mustDeny(t, reserve(t, s, "r2", c), 0, tc.next.Sub(tc.at), 2)
				clk.Set(tc.next.Add(-time.Nanosecond))
				mustDeny(t, reserve(t, s, "r2", c), 0, time.Nanosecond, 2)
				clk.Set(tc.next)
				adm = reserve(t, s, "r2", c)
				mustOK(t, adm, 1)
				if adm.Counters[0].Start != tc.next.Unix() {
					t.Fatalf("Start after rollover = %v, want %v", time.Unix(adm.Counters[0].Start, 0).UTC(), tc.next)
				}
			})
		}
		t.Run("total", func(t *testing.T) {
			s, clk := open(t, t0)
			c := ctr("b:total", WindowTotal, UnitNanoUSD, 100, 100, true)
			adm := reserve(t, s, "r1", c)
			mustOK(t, adm, 100)
			if adm.Counters[0].Start != 0 {
				t.Fatalf("total Start = %d, want 0", adm.Counters[0].Start)
			}
			settle(t, s, "r1", adm.Counters, nil)
			clk.Set(time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC))
			mustDeny(t, reserve(t, s, "r2", c), 0, 0, 100)
			wantUsage(t, s, c, clk.Now(), 100, 0)
		})
	})

	t.Run("SlotsAreIndependent", func(t *testing.T) {
		s, _ := open(t, t0)
		c := ctr("rl:rpm", WindowMinute, UnitRequests, 1, 1, true)
		mustOK(t, reserve(t, s, "r1", c), 1)
		adm, err := s.Reserve(context.Background(), "org_2", "r1", []Counter{c})
		if err != nil || !adm.OK {
			t.Fatalf("Reserve in another slot = %+v, %v", adm, err)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		s, _ := open(t, t0)
		ctx := context.Background()
		ok := ctr("rl:rpm", WindowMinute, UnitRequests, 1, 1, true)
		with := func(f func(*Counter)) []Counter {
			c := ok
			f(&c)
			return []Counter{c}
		}
		for name, call := range map[string]func() error{
			"slot with brace": func() error { _, err := s.Reserve(ctx, "a{b", "r1", []Counter{ok}); return err },
			"empty slot":      func() error { _, err := s.Reserve(ctx, "", "r1", []Counter{ok}); return err },
			"id with space":   func() error { _, err := s.Reserve(ctx, slot, "r 1", []Counter{ok}); return err },
			"key with space": func() error {
				_, err := s.Reserve(ctx, slot, "r1", with(func(c *Counter) { c.Key = "a b" }))
				return err
			},
			"unknown window": func() error {
				_, err := s.Reserve(ctx, slot, "r1", with(func(c *Counter) { c.Window = "fortnight" }))
				return err
			},
			"zero unit": func() error {
				_, err := s.Reserve(ctx, slot, "r1", with(func(c *Counter) { c.Unit = 0 }))
				return err
			},
			"negative amount": func() error {
				_, err := s.Reserve(ctx, slot, "r1", with(func(c *Counter) { c.Amount = -1 }))
				return err
			},
			"duplicate counter": func() error { _, err := s.Reserve(ctx, slot, "r1", []Counter{ok, ok}); return err },
			"settle without Start": func() error {
				return s.Settle(ctx, slot, "r1", []Counter{ok}, nil)
			},
			"settle misaligned Start": func() error {
				return s.Settle(ctx, slot, "r1", with(func(c *Counter) { c.Start = t0.Unix() }), nil)
			},
			"negative actual": func() error {
				return s.Settle(ctx, slot, "r1", with(func(c *Counter) { c.Start = t0.Truncate(time.Minute).Unix() }), map[Unit]int64{UnitTokens: -5})
			},
			"usage bad key": func() error {
				_, _, err := s.Usage(ctx, slot, with(func(c *Counter) { c.Key = "" })[0], t0)
				return err
			},
		} {
			if err := call(); !errors.Is(err, ErrInvalid) {
				t.Errorf("%s: err = %v, want ErrInvalid", name, err)
			}
		}
		wantUsage(t, s, ok, t0, 0, 0)
	})

	t.Run("LargeValuesAreExact", func(t *testing.T) {
		s, _ := open(t, t0)
		const limit = 1<<62 + 3 // far beyond float64's 2^53
		c := ctr("b:huge", WindowTotal, UnitNanoUSD, limit, limit-1, true)
		mustOK(t, reserve(t, s, "r1", c), limit-1)
		c.Amount = 2
		mustDeny(t, reserve(t, s, "r2", c), 0, 0, limit-1)
		c.Amount = 1
		mustOK(t, reserve(t, s, "r3", c), limit)
	})
}

// Counters of concurrencyTest.
var (
	concUSD = ctr("b:usd", WindowMonth, UnitNanoUSD, 2000, 0, true)
	concReq = ctr("rl:rpm", WindowMinute, UnitRequests, 150, 1, true)
)

// concurrencyTest races 200 admissions against a blocking budget that fits only some of
// them, and a request limit, then settles or releases each admitted one. It returns the
// final spent of both counters (at t0), which it has checked.
func concurrencyTest(t *testing.T, newStore newStoreFunc) (usdSpent, reqSpent int64) {
	clk := newClock(t0)
	s := newStore(t, clk.Now)
	defer s.Close()
	const n = 200
	usd, req := concUSD, concReq
	usdLimit, reqLimit := usd.Limit, req.Limit // expected usd demand ~ n × 25
	warn := ctr("b:warn", WindowDay, UnitTokens, 1, 10, false)

	var (
		spentWant, admitted, overLimit atomic.Int64
		wg                             sync.WaitGroup
		errs                           = make(chan error, n)
	)
	for i := range n {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			u := usd
			u.Amount = 1 + rng.Int64N(50)
			id := fmt.Sprint("req_", i)
			adm, err := s.Reserve(context.Background(), slot, id, []Counter{u, req, warn})
			if err != nil {
				errs <- err
				return
			}
			if !adm.OK {
				return
			}
			admitted.Add(1)
			if adm.Committed[0] > usdLimit || adm.Committed[1] > reqLimit {
				overLimit.Add(1)
			}
			if rng.IntN(5) == 0 {
				err = s.Release(context.Background(), slot, id, adm.Counters)
			} else {
				actual := rng.Int64N(u.Amount + 1)
				spentWant.Add(actual)
				err = s.Settle(context.Background(), slot, id, adm.Counters, map[Unit]int64{UnitNanoUSD: actual, UnitTokens: 3})
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if overLimit.Load() != 0 {
		t.Errorf("%d admissions reported committed over the limit", overLimit.Load())
	}
	if a := admitted.Load(); a == 0 || a == n {
		t.Fatalf("%d of %d admitted: the limits should admit only some", a, n)
	}
	spent, reserved, err := s.Usage(context.Background(), slot, usd, t0)
	if err != nil {
		t.Fatal(err)
	}
	if spent != spentWant.Load() || reserved != 0 || spent > usdLimit {
		t.Errorf("usd spent %d reserved %d, want spent %d (<= %d) reserved 0", spent, reserved, spentWant.Load(), usdLimit)
	}
	spent, reserved, err = s.Usage(context.Background(), slot, req, t0)
	if err != nil {
		t.Fatal(err)
	}
	if spent != admitted.Load() || reserved != 0 || spent > reqLimit {
		t.Errorf("requests spent %d reserved %d, want %d (<= %d) and 0", spent, reserved, admitted.Load(), reqLimit)
	}
	return spentWant.Load(), admitted.Load()
}
