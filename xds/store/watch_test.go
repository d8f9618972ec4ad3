package store

import (
	"context"
	"testing"
	"time"
)

func recv(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

func TestHubOverflowResyncs(t *testing.T) {
	h := newHub()
	h.buffer = 4
	defer h.close()
	ctx := context.Background()
	ch, err := h.subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The first event may already be in the goroutine's hands when the queue overflows,
	// so publish enough that the queue certainly overflows after it.
	for rev := int64(1); rev <= 20; rev++ {
		h.publish(Event{Kind: vk, ID: "vk_x", Revision: rev})
	}
	ev := recv(t, ch)
	if ev.Revision == 1 {
		ev = recv(t, ch)
	}
	if !ev.Resync {
		t.Fatalf("got %+v, want a Resync", ev)
	}
	// The queue may have overflowed more than once; what holds is the contract: events come
	// in revision order, a Resync may stand in for dropped ones, and delivery continues.
	h.publish(Event{Kind: vk, ID: "vk_x", Revision: 21})
	last := int64(0)
	for {
		ev := recv(t, ch)
		if ev.Resync {
			continue
		}
		if ev.Revision <= last {
			t.Fatalf("after Resync: revision %d after %d", ev.Revision, last)
		}
		if last = ev.Revision; last == 21 {
			return
		}
	}
}

func TestHubMinRevision(t *testing.T) {
	h := newHub()
	defer h.close()
	ch, w, err := h.subscribeWatcher(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h.publish(Event{Revision: 5})
	h.publish(Event{Revision: 6})
	w.setMinRevision(5)
	if ev := recv(t, ch); ev.Revision != 6 {
		t.Fatalf("got %+v, want revision 6 only", ev)
	}
}

func TestHubCloseEndsWatchers(t *testing.T) {
	h := newHub()
	ch, err := h.subscribe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h.publish(Event{Revision: 1}) // undelivered: close must not block on it
	h.close()
	for range ch {
	}
	if _, err := h.subscribe(context.Background()); err == nil {
		t.Fatal("subscribe after close")
	}
}
