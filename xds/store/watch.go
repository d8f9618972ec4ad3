package store

import (
	"context"
	"sync"
)

// watchBuffer is how many undelivered events a watcher may fall behind before its queue
// is dropped and replaced by one Resync event.
const watchBuffer = 4096

// hub fans events out to watchers. publish never blocks: each watcher has a bounded queue
// drained by its own goroutine, which exits when the watcher's ctx ends or the hub closes.
type hub struct {
	buffer int

	mu     sync.Mutex // guards the fields below
	subs   map[*watcher]struct{}
	closed bool
	wg     sync.WaitGroup
}

type watcher struct {
	out      chan Event
	notify   chan struct{} // cap 1: "queue changed"
	done     chan struct{} // closed by stop
	stopOnce sync.Once

	mu     sync.Mutex // guards the fields below
	queue  []Event
	resync bool
	// ready is false until the watcher knows minRev; nothing is delivered before.
	ready  bool
	minRev int64 // events at or below it are dropped (they committed before Watch)
}

func newHub() *hub { return &hub{buffer: watchBuffer, subs: map[*watcher]struct{}{}} }

// subscribe registers a watcher; every event published after it returns reaches it.
func (h *hub) subscribe(ctx context.Context) (<-chan Event, error) {
	ch, w, err := h.subscribeWatcher(ctx)
	if err == nil {
		w.setMinRevision(0)
	}
	return ch, err
}

// subscribeWatcher registers a watcher that delivers nothing until setMinRevision.
func (h *hub) subscribeWatcher(ctx context.Context) (<-chan Event, *watcher, error) {
	w := &watcher{out: make(chan Event), notify: make(chan struct{}, 1), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil, ErrClosed
	}
	h.subs[w] = struct{}{}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer close(w.out)
		w.run(ctx)
		h.mu.Lock()
		delete(h.subs, w)
		h.mu.Unlock()
	}()
	return w.out, w, nil
}

// publish queues ev for every watcher. Callers serialise publish calls in revision order.
func (h *hub) publish(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.subs {
		w.push(ev, h.buffer)
	}
}

// close ends every watcher and waits for their goroutines.
func (h *hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	for w := range h.subs {
		w.stop()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// stop ends the watcher: its goroutine exits and closes out.
func (w *watcher) stop() { w.stopOnce.Do(func() { close(w.done) }) }

// setMinRevision starts delivery, dropping queued and future events at or below rev.
func (w *watcher) setMinRevision(rev int64) {
	w.mu.Lock()
	w.ready, w.minRev = true, rev
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *watcher) push(ev Event, limit int) {
	w.mu.Lock()
	switch {
	case ev.Resync:
		w.queue, w.resync = w.queue[:0], true
	case len(w.queue) >= limit:
		// Overflow: what is queued is useless without what we drop, so drop it all.
		w.queue, w.resync = w.queue[:0], true
	default:
		w.queue = append(w.queue, ev)
	}
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *watcher) next() (Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.ready {
		return Event{}, false
	}
	if w.resync {
		w.resync = false
		return Event{Resync: true}, true
	}
	for len(w.queue) > 0 {
		ev := w.queue[0]
		w.queue[0] = Event{}
		w.queue = w.queue[1:]
		if len(w.queue) == 0 {
			w.queue = nil // let the backing array go
		}
		if ev.Revision > w.minRev {
			return ev, true
		}
	}
	return Event{}, false
}

func (w *watcher) run(ctx context.Context) {
	for {
		ev, ok := w.next()
		if !ok {
			select {
			case <-w.notify:
				continue
			case <-ctx.Done():
				return
			case <-w.done:
				return
			}
		}
		select {
		case w.out <- ev:
		case <-ctx.Done():
			return
		case <-w.done:
			return
		}
	}
}
