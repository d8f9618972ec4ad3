package logging

import (
	"sync/atomic"
	"time"
)

// EverySecond lets one event through per second: a log line about a condition that would
// otherwise repeat on every request (an outage). The zero value is ready; safe for
// concurrent use.
type EverySecond struct{ last atomic.Int64 }

// Allow reports whether a second has passed since it last returned true.
func (e *EverySecond) Allow() bool {
	now := time.Now().UnixNano()
	last := e.last.Load()
	return now-last >= int64(time.Second) && e.last.CompareAndSwap(last, now)
}
