// Package counters is the shared counter store behind budgets and rate limits.
//
// A request is admitted against a set of counters (a monthly budget in nano-USD, a
// per-minute request limit, a per-day token limit, …) in three steps: [Store.Reserve]
// holds its estimated amount on every counter at admission, atomically and only if every
// blocking counter has room; [Store.Settle] replaces the hold with the real amount when the
// response ends; [Store.Release] ends the hold of a request that failed. A blocking counter
// is never pushed over its limit by concurrent admissions, only by a Settle whose actual
// amount exceeds what was reserved.
//
// Two implementations share these semantics and one contract test suite: [MemoryStore]
// (one process, settled spend journaled to disk) and [RedisStore] (a fleet; atomic Lua
// scripts whose keys share one Redis Cluster hash slot).
package counters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

var (
	// ErrUnavailable wraps every failure to reach the backing store (Redis down, timeout,
	// script error). Callers apply their configured failure mode (open or closed).
	ErrUnavailable = errors.New("counters: store unavailable")
	// ErrInvalid wraps a malformed argument: a bad key, slot or id, an unknown window or
	// unit, a negative amount, or a Settle counter without the Start that Reserve set.
	ErrInvalid = errors.New("counters: invalid argument")
	// ErrIDReused is returned by Reserve for an id that was already settled or released:
	// a request id holds at most once. Use a fresh id (e.g. request id + attempt) to admit
	// again.
	ErrIDReused = errors.New("counters: id already settled")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("counters: store closed")
)

// Unit is what a counter counts. It only decides which entry of Settle's actual map
// replaces the reserved amount.
type Unit uint8

// The units. The zero Unit is invalid, so a forgotten field is caught.
const (
	UnitRequests Unit = iota + 1
	UnitTokens
	UnitNanoUSD
)

// Valid reports whether u is one of the defined units.
func (u Unit) Valid() bool { return u >= UnitRequests && u <= UnitNanoUSD }

func (u Unit) String() string {
	switch u {
	case UnitRequests:
		return "requests"
	case UnitTokens:
		return "tokens"
	case UnitNanoUSD:
		return "nano_usd"
	}
	return fmt.Sprintf("Unit(%d)", uint8(u))
}

// Window is a UTC calendar window. Windows are fixed, not sliding: a minute window resets
// at every minute boundary.
type Window string

// The windows. A week starts on Monday 00:00 UTC (ISO week); total never ends.
const (
	WindowMinute Window = "minute"
	WindowHour   Window = "hour"
	WindowDay    Window = "day"
	WindowWeek   Window = "week"
	WindowMonth  Window = "month"
	WindowTotal  Window = "total"
)

// Valid reports whether w is one of the defined windows.
func (w Window) Valid() bool {
	switch w {
	case WindowMinute, WindowHour, WindowDay, WindowWeek, WindowMonth, WindowTotal:
		return true
	}
	return false
}

// Bounds returns the window containing t, in UTC: start inclusive, end exclusive. For
// WindowTotal, start is the Unix epoch and end is the zero Time. Bounds of an invalid
// window are both zero.
func (w Window) Bounds(t time.Time) (start, end time.Time) {
	if !w.Valid() {
		return time.Time{}, time.Time{}
	}
	s, e := w.bounds(t.Unix())
	start = time.Unix(s, 0).UTC()
	if w != WindowTotal {
		end = time.Unix(e, 0).UTC()
	}
	return start, end
}

const day = 24 * 60 * 60

// bounds is Bounds in Unix seconds, end 0 for total. It avoids time.Date on the hot path
// for every window but month.
func (w Window) bounds(sec int64) (start, end int64) {
	switch w {
	case WindowMinute:
		start = floorDiv(sec, 60) * 60
		return start, start + 60
	case WindowHour:
		start = floorDiv(sec, 3600) * 3600
		return start, start + 3600
	case WindowDay:
		start = floorDiv(sec, day) * day
		return start, start + day
	case WindowWeek:
		d := floorDiv(sec, day)
		// 1970-01-01 was a Thursday: days since Monday = (d+3) mod 7.
		start = (d - ((d%7 + 7 + 3) % 7)) * day
		return start, start + 7*day
	case WindowMonth:
		y, m, _ := time.Unix(sec, 0).UTC().Date()
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC).Unix()
	}
	return 0, 0 // total
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Counter is one limit a request is admitted against.
type Counter struct {
	// Key is the counter's stable identity chosen by the caller, e.g. "b:bg_123" or
	// "rl:vk_1:rpm": 1-512 bytes of printable ASCII without spaces. The store adds the
	// window and its start, so the same Key under two windows is two counters.
	Key    string
	Window Window
	Unit   Unit
	// Limit is checked only when Block is set.
	Limit int64
	// Amount is what this request reserves; Settle debits it for a Unit missing from the
	// actual map.
	Amount int64
	// Block makes the counter deny admission when Amount does not fit. A non-blocking
	// counter (a "warn" budget) is counted but never denies.
	Block bool
	// Start is the Unix second at which the reserved window starts. Reserve sets it;
	// Settle and Release need it, so pass them the counters Reserve returned.
	Start int64
}

// Admission is the outcome of Reserve.
type Admission struct {
	OK bool
	// Denied is the index of the first blocking counter that refused, -1 when OK.
	Denied int
	// RetryAfter is, for a denial, the time until the denied counter's window ends
	// (0 for a total window, which never ends).
	RetryAfter time.Duration
	// Committed is, per counter, spent + reserved in its window after this admission
	// (OK) or at the time of the check (denied).
	Committed []int64
	// Counters is a copy of the input with Start set.
	Counters []Counter
}

// Store is the counter store. All methods are safe for concurrent use.
//
// slot names the Redis Cluster hash slot group every key of a call is built in (the
// caller passes e.g. an organization id): 1-128 bytes of printable ASCII without spaces or
// braces. id is the Sluice request id, same alphabet as a Key. Counters in one call must
// be distinct by (Key, Window).
type Store interface {
	// Reserve checks every blocking counter: spent + reserved + Amount <= Limit. If all
	// pass it adds Amount to every counter's reserved total and remembers the hold under
	// id; otherwise it changes nothing. It is atomic across the counters of the call.
	//
	// Reserve is idempotent per (id, counter): a counter id already holds is neither
	// checked nor reserved again, so retrying a Reserve whose reply was lost is safe. An id
	// that was already settled or released yields ErrIDReused.
	Reserve(ctx context.Context, slot, id string, cs []Counter) (Admission, error)
	// Settle ends the hold of id: for each counter (as Reserve returned it, Start set) it
	// removes the held amount from reserved and adds actual[c.Unit] to spent, or c.Amount
	// when actual has no entry for c.Unit (so requests stay counted). The debit lands in
	// the window of c.Start even after that window ended.
	//
	// Settle takes effect once per id: a later Settle or Release of the same id changes
	// nothing (for Options.SettledTTL). A Settle without a live hold (it expired, or the
	// memory store restarted, or Reserve failed open) still debits, once.
	Settle(ctx context.Context, slot, id string, cs []Counter, actual map[Unit]int64) error
	// Release is Settle with zero tokens and zero money: the request stays counted.
	Release(ctx context.Context, slot, id string, cs []Counter) error
	// Usage reads the window of c (Key, Window; Start is ignored) that contains at,
	// without changing it. Expired holds are not counted as reserved.
	Usage(ctx context.Context, slot string, c Counter, at time.Time) (spent, reserved int64, err error)
	Close() error
}

// Options configures both implementations. The zero value is usable.
type Options struct {
	// Now is the clock; nil means time.Now. Windows and hold expiry follow it.
	Now func() time.Time
	// HoldTTL is how long an unsettled hold counts as reserved (a dispatcher that crashed
	// never settles). Default 1 hour.
	HoldTTL time.Duration
	// SettledTTL is how long a settled id is remembered, making a repeated Settle a no-op.
	// Default max(2×HoldTTL, 24h). Each remembered id costs memory (a Redis key, or a map
	// entry in the memory store) for this long.
	SettledTTL time.Duration
	// Prefix starts every Redis key (RedisStore only). Default "sluice". No braces or
	// whitespace.
	Prefix string
	// Sync makes MemoryStore fsync its journal after every Settle.
	Sync bool
	// Logger receives what the store can't return: a failed background journal
	// compaction (MemoryStore). Nil discards.
	Logger *slog.Logger
}

const defaultHoldTTL = time.Hour

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HoldTTL <= 0 {
		o.HoldTTL = defaultHoldTTL
	}
	if o.SettledTTL <= 0 {
		o.SettledTTL = max(2*o.HoldTTL, 24*time.Hour)
	}
	if o.Prefix == "" {
		o.Prefix = "sluice"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// releaseActual is the actual map of Release. Read only.
var releaseActual = map[Unit]int64{UnitTokens: 0, UnitNanoUSD: 0}

// settleAmount is what Settle debits on c.
func settleAmount(c *Counter, actual map[Unit]int64) int64 {
	if v, ok := actual[c.Unit]; ok {
		return v
	}
	return c.Amount
}

const (
	maxKeyLen  = 512
	maxSlotLen = 128
)

// validName reports whether s is 1-max bytes of printable ASCII without spaces (and
// without braces when noBraces is set, for names that sit inside a Redis hash tag).
func validName(s string, max int, noBraces bool) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || noBraces && (c == '{' || c == '}') {
			return false
		}
	}
	return true
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func checkSlotID(slot, id string) error {
	if !validName(slot, maxSlotLen, true) {
		return invalid("slot %q", slot)
	}
	if !validName(id, maxKeyLen, false) {
		return invalid("id %q", id)
	}
	return nil
}

func checkCounter(c *Counter) error {
	if !validName(c.Key, maxKeyLen, false) {
		return invalid("counter key %q", c.Key)
	}
	if !c.Window.Valid() {
		return invalid("counter %s: window %q", c.Key, c.Window)
	}
	if !c.Unit.Valid() {
		return invalid("counter %s: unit %d", c.Key, c.Unit)
	}
	if c.Limit < 0 || c.Amount < 0 {
		return invalid("counter %s: negative limit or amount", c.Key)
	}
	return nil
}

// checkCall validates the arguments of Reserve (settle false) or Settle (settle true).
func checkCall(slot, id string, cs []Counter, actual map[Unit]int64, settle bool) error {
	if err := checkSlotID(slot, id); err != nil {
		return err
	}
	for i := range cs {
		c := &cs[i]
		if err := checkCounter(c); err != nil {
			return err
		}
		if settle {
			if s, _ := c.Window.bounds(c.Start); s != c.Start || c.Start == 0 && c.Window != WindowTotal {
				return invalid("counter %s: Start %d is not a %s window start (pass the counters Reserve returned)", c.Key, c.Start, c.Window)
			}
		}
		for j := range i {
			if cs[j].Key == c.Key && cs[j].Window == c.Window {
				return invalid("counter %s/%s listed twice", c.Key, c.Window)
			}
		}
	}
	for u, v := range actual {
		if v < 0 {
			return invalid("negative actual %s", u)
		}
	}
	return nil
}
