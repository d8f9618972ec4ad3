// Package breaker keeps one circuit breaker per provider credential for the dispatcher's
// provider chain: Threshold failures within Window open a provider's circuit for Cooldown,
// after which a single probe decides whether it closes again. A 429 is not a failure; a
// provider's retry-after pauses it without touching the circuit.
//
// One [Set] serves every request of the process. For a provider whose circuit is closed,
// [Set.Allow] and [Permit.Record] take no lock and do not allocate.
package breaker

import (
	"sync"
	"sync/atomic"
	"time"
)

// State is a circuit's state. The values match metrics.CircuitState, so a state converts to
// the sluice_circuit_breaker_state gauge with a plain conversion.
type State uint8

// The circuit states.
const (
	// Closed lets every attempt through and counts failures.
	Closed State = 0
	// HalfOpen lets one probe attempt through; its outcome closes or reopens the circuit.
	HalfOpen State = 1
	// Open refuses every attempt until the cooldown has passed.
	Open State = 2
)

// String returns closed, half-open or open, as metrics.CircuitState does.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return "unknown"
}

// Outcome is how an attempt ended, as far as the provider's health is concerned.
type Outcome uint8

// The outcomes. The zero value is Neutral, so an outcome nobody set never counts.
const (
	// Neutral says nothing about the provider: the client cancelled, or a 4xx other than 429.
	// On a probe it frees the probe slot for the next caller.
	Neutral Outcome = iota
	// Success is a healthy response (2xx). Outside a probe it changes nothing: failures
	// expire with the window, not with successes. A successful probe closes the circuit.
	Success
	// Failure is a 5xx, a timeout or a network error. It counts towards opening a closed
	// circuit; a failed probe reopens it.
	Failure
	// RateLimited is a 429: neither a success nor a failure. On a probe it frees the slot,
	// like Neutral. Use [Permit.RecordRateLimited] when the provider sent a retry-after.
	RateLimited
)

// Config tunes a [Set]. Zero fields take the documented defaults.
type Config struct {
	// Threshold is the number of failures within Window that opens a closed circuit.
	// Default 5.
	Threshold int
	// Window is how far back failures count: a failure at t counts until t+Window
	// (exclusive). Default 30 s.
	Window time.Duration
	// Cooldown is how long an open circuit refuses attempts before it lets a probe through.
	// Default 30 s.
	Cooldown time.Duration
	// ProbeTimeout frees the probe slot of a half-open circuit when the probe's outcome was
	// not recorded in time, so a lost probe cannot wedge the circuit. Default Cooldown.
	ProbeTimeout time.Duration
	// MaxRetryAfter caps a provider's retry-after, so a hostile or broken header cannot park
	// a provider for a day. Default 60 s.
	MaxRetryAfter time.Duration
	// Now is the clock. Default time.Now. It must not go backwards.
	Now func() time.Time
	// OnChange, if set, is called on every state transition, e.g. to set the
	// sluice_circuit_breaker_state gauge and log the change. Calls for one id arrive in
	// transition order and are serialized; they run outside the breaker's state lock but
	// block that id's next transition, so OnChange must be cheap and must not record
	// outcomes for the same id.
	OnChange func(id string, from, to State)
}

// Set holds the circuit breakers of every provider of a process. Its methods are safe for
// concurrent use.
type Set struct {
	// Immutable after New.
	threshold     int
	window        int64 // nanoseconds, as are all durations and instants below
	cooldown      int64
	probeTimeout  int64
	maxRetryAfter int64
	now           func() time.Time
	base          time.Time // instants are nanoseconds since base
	onChange      func(id string, from, to State)

	// breakers is read without a lock on every Allow; it is replaced, never modified.
	breakers atomic.Pointer[map[string]*breaker]
	mu       sync.Mutex // serializes replacements of breakers
}

// New returns an empty Set configured by c.
func New(c Config) *Set {
	s := &Set{
		threshold:     c.Threshold,
		window:        int64(c.Window),
		cooldown:      int64(c.Cooldown),
		probeTimeout:  int64(c.ProbeTimeout),
		maxRetryAfter: int64(c.MaxRetryAfter),
		now:           c.Now,
		onChange:      c.OnChange,
	}
	if s.threshold <= 0 {
		s.threshold = 5
	}
	if s.window <= 0 {
		s.window = int64(30 * time.Second)
	}
	if s.cooldown <= 0 {
		s.cooldown = int64(30 * time.Second)
	}
	if s.probeTimeout <= 0 {
		s.probeTimeout = s.cooldown
	}
	if s.maxRetryAfter <= 0 {
		s.maxRetryAfter = int64(60 * time.Second)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.base = s.now()
	s.breakers.Store(&map[string]*breaker{})
	return s
}

// Allow reports whether provider id may be attempted now. It is false while id's circuit is
// open, while a half-open circuit's probe is out, and while id is paused by a retry-after;
// the caller then skips id (fallback reason circuit_open, or 429 if [Set.State] is Closed).
//
// When Allow is true the caller must record the attempt's outcome on the permit exactly
// once. For a half-open circuit the permit is the single probe.
func (s *Set) Allow(id string) (Permit, bool) {
	b := s.breaker(id)
	w := b.word.Load()
	switch stateOf(w) {
	case Closed:
		return b.allowClosed(w)
	case Open:
		if s.nanos() < b.until.Load() {
			return Permit{}, false
		}
	case HalfOpen:
		// A free slot (until 0) and no pause need no clock read.
		if u, bl := b.until.Load(), b.blocked.Load(); u != 0 || bl != 0 {
			if now := s.nanos(); now < u || now < bl {
				return Permit{}, false
			}
		}
	}
	return b.probe()
}

// State returns id's circuit state; an unknown id is Closed. An open circuit whose cooldown
// has passed stays Open until the next Allow turns it half-open.
func (s *Set) State(id string) State {
	if b := (*s.breakers.Load())[id]; b != nil {
		return stateOf(b.word.Load())
	}
	return Closed
}

// PausedFor is how much longer id is paused by a provider's retry-after (0 when it is
// not): a provider Allow refuses for this reason is rate-limited, not failing.
func (s *Set) PausedFor(id string) time.Duration {
	b := (*s.breakers.Load())[id]
	if b == nil {
		return 0
	}
	bl := b.blocked.Load()
	if bl == 0 {
		return 0
	}
	return max(time.Duration(bl-s.nanos()), 0)
}

// Forget drops the breakers of every id for which keep returns false, e.g. providers that
// are no longer configured. Permits issued before still record harmlessly. OnChange is not
// called; the caller deletes any per-id series itself.
func (s *Set) Forget(keep func(id string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.breakers.Load()
	m := make(map[string]*breaker, len(old))
	for id, b := range old {
		if keep(id) {
			m[id] = b
		}
	}
	s.breakers.Store(&m)
}

// breaker returns id's breaker, creating it on first use.
func (s *Set) breaker(id string) *breaker {
	if b := (*s.breakers.Load())[id]; b != nil {
		return b
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.breakers.Load()
	if b := old[id]; b != nil {
		return b
	}
	b := &breaker{set: s, id: id, fails: make([]int64, s.threshold)}
	m := make(map[string]*breaker, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[id] = b
	s.breakers.Store(&m)
	return b
}

// nanos returns the current instant in nanoseconds since s.base.
func (s *Set) nanos() int64 { return int64(s.now().Sub(s.base)) }

// Permit is the right to make one attempt, returned by [Set.Allow]. The zero Permit records
// nothing. A permit is a small value: copy it freely, but record one outcome per attempt.
type Permit struct {
	b    *breaker
	word uint64 // b.word when the permit was issued
}

// Record records the attempt's outcome. It is ignored when the circuit has changed state
// since the permit was issued (a late result from before the circuit opened, or a probe
// whose slot timed out), so stale outcomes never flip a circuit.
func (p Permit) Record(o Outcome) {
	b := p.b
	if b == nil {
		return
	}
	switch stateOf(p.word) {
	case Closed:
		if o == Failure {
			b.fail(p.word)
		}
	case HalfOpen:
		b.settle(p.word, o)
	}
}

// RecordRateLimited records a 429 whose retry-after asks the caller to wait until until:
// [Set.Allow] refuses the provider until then, capped at MaxRetryAfter from now. The circuit
// state does not change; a later pause never shortens an earlier one. On a probe the pause
// is set before the probe slot is freed, so no other caller probes in between.
func (p Permit) RecordRateLimited(until time.Time) {
	b := p.b
	if b == nil {
		return
	}
	s := b.set
	now := s.nanos()
	u := min(int64(until.Sub(s.base)), now+s.maxRetryAfter)
	for u > now {
		cur := b.blocked.Load()
		if cur >= u || b.blocked.CompareAndSwap(cur, u) {
			break
		}
	}
	p.Record(RateLimited)
}

// word packs a breaker's state (low two bits) with a generation that grows on every
// transition and every probe issued, so a permit can tell whether it is still current.
func stateOf(w uint64) State { return State(w & 3) }

func nextWord(w uint64, s State) uint64 { return (w&^3 + 4) | uint64(s) }

type breaker struct {
	set *Set
	id  string

	// word is read without a lock; it and until change only under mu.
	word atomic.Uint64
	// until is the end of the cooldown when Open, and the probe slot's deadline when
	// HalfOpen (0: the slot is free).
	until atomic.Int64
	// blocked is the end of a retry-after pause, 0 if none; set by CAS, independent of mu.
	blocked atomic.Int64

	mu sync.Mutex // guards the fields below, and transitions of word and until
	// fails holds the instants of the last len(fails) failures of the current closed
	// period, a ring whose oldest entry is at next once n == len(fails).
	fails []int64
	n     int
	next  int

	notify sync.Mutex // serializes OnChange calls in transition order
}

// allowClosed is Allow for a circuit that was closed as word w: only a retry-after pause
// refuses it. An expired pause is cleared so later calls skip the clock.
func (b *breaker) allowClosed(w uint64) (Permit, bool) {
	if bl := b.blocked.Load(); bl != 0 {
		if b.set.nanos() < bl {
			return Permit{}, false
		}
		b.blocked.CompareAndSwap(bl, 0)
	}
	return Permit{b: b, word: w}, true
}

// fail counts a failure of the closed period w and opens the circuit when Threshold
// failures fall within Window.
func (b *breaker) fail(w uint64) {
	s := b.set
	b.mu.Lock()
	if b.word.Load() != w {
		b.mu.Unlock()
		return
	}
	now := s.nanos()
	b.fails[b.next] = now
	b.next = (b.next + 1) % len(b.fails)
	b.n = min(b.n+1, len(b.fails))
	if b.n < len(b.fails) || now-b.fails[b.next] >= s.window {
		b.mu.Unlock()
		return
	}
	b.until.Store(now + s.cooldown)
	b.word.Store(nextWord(w, Open))
	b.unlock(Closed, Open)
}

// probe is Allow's slow path for a circuit that is not closed: it turns an open circuit
// whose cooldown has passed half-open, and hands out the probe slot if it is free or its
// holder timed out.
func (b *breaker) probe() (Permit, bool) {
	s := b.set
	b.mu.Lock()
	w := b.word.Load()
	now := s.nanos()
	from := stateOf(w)
	switch from {
	case Closed: // closed by a probe since the caller looked
		b.mu.Unlock()
		return b.allowClosed(w)
	case Open:
		if now < b.until.Load() {
			b.mu.Unlock()
			return Permit{}, false
		}
	case HalfOpen:
		if u := b.until.Load(); u != 0 && now < u {
			b.mu.Unlock()
			return Permit{}, false
		}
	}
	if now < b.blocked.Load() { // a retry-after pause: do not waste the probe on it
		if from == Open {
			b.until.Store(0)
			w = nextWord(w, HalfOpen)
			b.word.Store(w)
		}
		b.unlock(from, HalfOpen)
		return Permit{}, false
	}
	b.until.Store(now + s.probeTimeout)
	w = nextWord(w, HalfOpen)
	b.word.Store(w)
	b.unlock(from, HalfOpen)
	return Permit{b: b, word: w}, true
}

// settle applies the outcome of the probe issued as word w.
func (b *breaker) settle(w uint64, o Outcome) {
	s := b.set
	b.mu.Lock()
	if b.word.Load() != w {
		b.mu.Unlock()
		return
	}
	switch o {
	case Success:
		b.n, b.next = 0, 0
		b.until.Store(0)
		b.word.Store(nextWord(w, Closed))
		b.unlock(HalfOpen, Closed)
	case Failure:
		b.until.Store(s.nanos() + s.cooldown)
		b.word.Store(nextWord(w, Open))
		b.unlock(HalfOpen, Open)
	default: // Neutral, RateLimited: free the slot for the next caller
		b.until.Store(0)
		b.word.Store(nextWord(w, HalfOpen))
		b.mu.Unlock()
	}
}

// unlock releases b.mu and, when from != to, reports the transition through OnChange. The
// notify lock is taken before mu is released, so reports for one id keep their order.
func (b *breaker) unlock(from, to State) {
	onChange := b.set.onChange
	if from == to || onChange == nil {
		b.mu.Unlock()
		return
	}
	b.notify.Lock()
	defer b.notify.Unlock()
	b.mu.Unlock()
	onChange(b.id, from, to)
}
