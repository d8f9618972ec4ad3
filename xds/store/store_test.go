package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
)

// backend makes a fresh, empty backing location (a directory, a Redis prefix) and returns
// a function opening a Store on it; each call opens a new instance over the same data.
// The contract closes every store it opens.
type backend func(t *testing.T) (open func() (Store, error))

const (
	vk = config.KindVirtualKey
	mp = config.KindModelProvider
)

// contractTest runs the behaviour every Store implementation must have.
func contractTest(t *testing.T, newBackend backend) {
	ctx := context.Background()
	fresh := func(t *testing.T) Store {
		t.Helper()
		s, err := newBackend(t)()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}

	t.Run("CRUD", func(t *testing.T) {
		s := fresh(t)
		if rev, err := s.Revision(ctx); err != nil || rev != 0 {
			t.Fatalf("empty Revision = %d, %v", rev, err)
		}
		if _, err := s.Get(ctx, vk, "vk_a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get missing: %v", err)
		}
		in := []byte(`{"name":"a"}`)
		d, err := s.Put(ctx, vk, "vk_a", in, CreateOnly)
		if err != nil || d.Revision != 1 || d.ID != "vk_a" || d.Kind != vk || string(d.Value) != `{"name":"a"}` {
			t.Fatalf("create = %+v, %v", d, err)
		}
		in[2] = 'X' // the store copied it
		got, err := s.Get(ctx, vk, "vk_a")
		if err != nil || got.Revision != 1 || string(got.Value) != `{"name":"a"}` {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		got.Value[2] = 'Y' // and returns copies
		if again, _ := s.Get(ctx, vk, "vk_a"); string(again.Value) != `{"name":"a"}` {
			t.Fatal("returned Value aliases the store")
		}
		if _, err := s.Put(ctx, vk, "vk_a", []byte(`{}`), CreateOnly); !errors.Is(err, ErrExists) {
			t.Fatalf("create twice: %v", err)
		}
		d2, err := s.Put(ctx, vk, "vk_a", []byte(`{"v":2}`), 1)
		if err != nil || d2.Revision != 2 {
			t.Fatalf("CAS = %+v, %v", d2, err)
		}
		if _, err := s.Put(ctx, vk, "vk_a", []byte(`{"v":3}`), 1); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale CAS: %v", err)
		}
		if _, err := s.Put(ctx, vk, "vk_missing", []byte(`{}`), 5); !errors.Is(err, ErrNotFound) {
			t.Fatalf("CAS on missing: %v", err)
		}
		if d, err := s.Put(ctx, vk, "vk_a", []byte(`{"v":4}`), Unconditional); err != nil || d.Revision != 3 {
			t.Fatalf("unconditional = %+v, %v", d, err)
		}
		if d, err := s.Put(ctx, vk, "vk_new", []byte(`{}`), Unconditional); err != nil || d.Revision != 4 {
			t.Fatalf("unconditional create = %+v, %v", d, err)
		}
		if _, err := s.Put(ctx, mp, "vk_a", []byte(`"other kind"`), CreateOnly); err != nil {
			t.Fatalf("same id, other kind: %v", err)
		}
		for _, id := range []string{"vk_c", "vk_b"} {
			if _, err := s.Put(ctx, vk, id, []byte(id), CreateOnly); err != nil {
				t.Fatal(err)
			}
		}
		list, err := s.List(ctx, vk)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range list {
			ids = append(ids, d.ID)
		}
		if fmt.Sprint(ids) != "[vk_a vk_b vk_c vk_new]" || string(list[1].Value) != "vk_b" || list[0].Revision != 3 {
			t.Fatalf("List = %v / %+v", ids, list)
		}
		if l, _ := s.List(ctx, config.KindBudget); len(l) != 0 {
			t.Fatalf("List empty kind = %v", l)
		}
		if err := s.Delete(ctx, vk, "vk_a", 2); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale delete: %v", err)
		}
		if err := s.Delete(ctx, vk, "vk_a", 3); err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, vk, "vk_a", Unconditional); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete missing: %v", err)
		}
		if _, err := s.Get(ctx, vk, "vk_a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get deleted: %v", err)
		}
		if _, err := s.Get(ctx, mp, "vk_a"); err != nil {
			t.Fatalf("other kind gone with the delete: %v", err)
		}
		if err := s.Delete(ctx, vk, "vk_b", Unconditional); err != nil {
			t.Fatal(err)
		}
		if rev, _ := s.Revision(ctx); rev != 9 {
			t.Fatalf("Revision = %d after 9 writes", rev)
		}
		if d, err := s.Put(ctx, vk, "vk_a", []byte(`{}`), CreateOnly); err != nil || d.Revision != 10 {
			t.Fatalf("recreate after delete = %+v, %v", d, err)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		s := fresh(t)
		for _, tc := range []struct {
			kind config.Kind
			id   string
		}{{"nope", "x"}, {vk, ""}, {vk, "has space"}, {vk, "new\nline"}} {
			if _, err := s.Put(ctx, tc.kind, tc.id, nil, Unconditional); err == nil {
				t.Errorf("Put(%q, %q) succeeded", tc.kind, tc.id)
			}
			if _, err := s.Get(ctx, tc.kind, tc.id); err == nil || errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%q, %q) = %v, want a validation error", tc.kind, tc.id, err)
			}
		}
		if _, err := s.Put(ctx, vk, "vk_a", nil, -2); err == nil {
			t.Error("ifRevision -2 accepted")
		}
		if _, err := s.PutIndexed(ctx, vk, "vk_a", nil, Unconditional, map[string]string{"h": "x"}, map[string]string{"h": "x"}); err == nil {
			t.Error("set and unset of one entry accepted")
		}
		if _, err := s.List(ctx, "nope"); err == nil {
			t.Error("List unknown kind accepted")
		}
	})

	t.Run("ConcurrentCAS", func(t *testing.T) {
		s := fresh(t)
		if _, err := s.Put(ctx, mp, "mp_counter", []byte("0"), CreateOnly); err != nil {
			t.Fatal(err)
		}
		const n = 16
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					d, err := s.Get(ctx, mp, "mp_counter")
					if err != nil {
						errs <- err
						return
					}
					v, _ := strconv.Atoi(string(d.Value))
					_, err = s.Put(ctx, mp, "mp_counter", []byte(strconv.Itoa(v+1)), d.Revision)
					if errors.Is(err, ErrConflict) {
						continue
					}
					errs <- err
					return
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		d, _ := s.Get(ctx, mp, "mp_counter")
		if string(d.Value) != strconv.Itoa(n) {
			t.Fatalf("counter = %s, want %d", d.Value, n)
		}

		var wins sync.WaitGroup
		var mu sync.Mutex
		created := 0
		for i := range n {
			wins.Add(1)
			go func() {
				defer wins.Done()
				_, err := s.Put(ctx, mp, "mp_once", []byte(strconv.Itoa(i)), CreateOnly)
				if err == nil {
					mu.Lock()
					created++
					mu.Unlock()
				} else if !errors.Is(err, ErrExists) {
					t.Error(err)
				}
			}()
		}
		wins.Wait()
		if created != 1 {
			t.Fatalf("%d concurrent creates succeeded, want 1", created)
		}
	})

	t.Run("Index", func(t *testing.T) {
		s := fresh(t)
		h := func(k string) map[string]string { return map[string]string{"vk_hash": k} }
		if _, err := s.Index(ctx, "vk_hash", "h1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Index missing: %v", err)
		}
		if _, err := s.PutIndexed(ctx, vk, "vk_1", []byte("one"), CreateOnly, h("h1"), nil); err != nil {
			t.Fatal(err)
		}
		if id, err := s.Index(ctx, "vk_hash", "h1"); err != nil || id != "vk_1" {
			t.Fatalf("Index = %q, %v", id, err)
		}
		rev, _ := s.Revision(ctx)
		// Taken by another id: nothing is written, not even the document.
		if _, err := s.PutIndexed(ctx, vk, "vk_2", []byte("two"), CreateOnly, map[string]string{"other": "x", "vk_hash": "h1"}, nil); !errors.Is(err, ErrExists) {
			t.Fatalf("taken index: %v", err)
		}
		if _, err := s.Get(ctx, vk, "vk_2"); !errors.Is(err, ErrNotFound) {
			t.Fatal("document written despite the index conflict")
		}
		if _, err := s.Index(ctx, "other", "x"); !errors.Is(err, ErrNotFound) {
			t.Fatal("index entry written despite the conflict")
		}
		if r, _ := s.Revision(ctx); r != rev {
			t.Fatalf("revision moved on a failed write: %d → %d", rev, r)
		}
		// The same key under another index name is independent.
		if _, err := s.PutIndexed(ctx, vk, "vk_2", []byte("two"), CreateOnly, map[string]string{"name": "h1"}, nil); err != nil {
			t.Fatal(err)
		}
		// Re-setting an entry the document owns is fine; a plain Put keeps it.
		if _, err := s.PutIndexed(ctx, vk, "vk_1", []byte("one"), Unconditional, h("h1"), nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Put(ctx, vk, "vk_1", []byte("one'"), Unconditional); err != nil {
			t.Fatal(err)
		}
		if id, _ := s.Index(ctx, "vk_hash", "h1"); id != "vk_1" {
			t.Fatal("plain Put dropped the index entry")
		}
		// Rotation: set the new hash, keep the old one (grace), then drop it.
		if _, err := s.PutIndexed(ctx, vk, "vk_1", []byte("rotated"), Unconditional, h("h2"), nil); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"h1", "h2"} {
			if id, _ := s.Index(ctx, "vk_hash", k); id != "vk_1" {
				t.Fatalf("during grace %s → %q", k, id)
			}
		}
		// Unindexing an entry owned by someone else leaves it alone.
		if _, err := s.PutIndexed(ctx, vk, "vk_2", []byte("two"), Unconditional, nil, h("h2")); err != nil {
			t.Fatal(err)
		}
		if id, _ := s.Index(ctx, "vk_hash", "h2"); id != "vk_1" {
			t.Fatal("another document removed vk_1's entry")
		}
		if _, err := s.PutIndexed(ctx, vk, "vk_1", []byte("rotated"), Unconditional, nil, h("h1")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Index(ctx, "vk_hash", "h1"); !errors.Is(err, ErrNotFound) {
			t.Fatal("unindexed entry still there")
		}
		// A freed key can be taken by another document.
		if _, err := s.PutIndexed(ctx, vk, "vk_2", []byte("two"), Unconditional, h("h1"), nil); err != nil {
			t.Fatal(err)
		}
		// Delete drops the entries the document owns.
		if err := s.Delete(ctx, vk, "vk_1", Unconditional); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Index(ctx, "vk_hash", "h2"); !errors.Is(err, ErrNotFound) {
			t.Fatal("Delete left the index entry")
		}
		if id, _ := s.Index(ctx, "vk_hash", "h1"); id != "vk_2" {
			t.Fatal("Delete removed another document's entry")
		}

		// Racing claims on one key: exactly one wins.
		const n = 12
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []string
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("vk_r%d", i)
				_, err := s.PutIndexed(ctx, vk, id, []byte(id), CreateOnly, h("contested"), nil)
				if err == nil {
					mu.Lock()
					winners = append(winners, id)
					mu.Unlock()
				} else if !errors.Is(err, ErrExists) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if len(winners) != 1 {
			t.Fatalf("winners = %v", winners)
		}
		if id, _ := s.Index(ctx, "vk_hash", "contested"); id != winners[0] {
			t.Fatalf("index → %q, winner %q", id, winners[0])
		}
	})

	t.Run("Watch", func(t *testing.T) {
		s := fresh(t)
		if _, err := s.Put(ctx, vk, "vk_before", nil, CreateOnly); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch, err := s.Watch(wctx)
		if err != nil {
			t.Fatal(err)
		}
		other, err := s.Watch(wctx)
		if err != nil {
			t.Fatal(err)
		}
		const n = 50
		var want []Event
		for i := range n {
			id := fmt.Sprintf("vk_%02d", i)
			d, err := s.Put(ctx, vk, id, []byte("x"), CreateOnly)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, Event{Kind: vk, ID: id, Revision: d.Revision})
		}
		if err := s.Delete(ctx, vk, "vk_00", Unconditional); err != nil {
			t.Fatal(err)
		}
		rev, _ := s.Revision(ctx)
		want = append(want, Event{Kind: vk, ID: "vk_00", Revision: rev, Deleted: true})
		for _, c := range []<-chan Event{ch, other} {
			for i, w := range want {
				select {
				case got := <-c:
					if got != w {
						t.Fatalf("event %d = %+v, want %+v", i, got, w)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("event %d not delivered", i)
				}
			}
		}
		cancel()
		for _, c := range []<-chan Event{ch, other} {
			select {
			case ev, ok := <-c:
				if ok {
					t.Fatalf("after cancel: %+v", ev)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("channel not closed after ctx ended")
			}
		}
	})

	t.Run("WatchClosedByClose", func(t *testing.T) {
		s, err := newBackend(t)()
		if err != nil {
			t.Fatal(err)
		}
		ch, err := s.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		select {
		case _, ok := <-ch:
			if ok {
				t.Fatal("event after Close")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("channel not closed by Close")
		}
		if _, err := s.Watch(ctx); err == nil {
			t.Fatal("Watch after Close succeeded")
		}
	})

	t.Run("Persistence", func(t *testing.T) {
		open := newBackend(t)
		s1, err := open()
		if err != nil {
			t.Fatal(err)
		}
		s1.PutIndexed(ctx, vk, "vk_1", []byte(`{"a":1}`), CreateOnly, map[string]string{"vk_hash": "h1"}, nil)
		s1.Put(ctx, vk, "vk_2", []byte(`{"b":2}`), CreateOnly)
		s1.Put(ctx, mp, "mp_1", []byte(`{"c":3}`), CreateOnly)
		s1.Put(ctx, vk, "vk_2", []byte(`{"b":22}`), 2)
		s1.PutIndexed(ctx, vk, "vk_3", nil, CreateOnly, map[string]string{"vk_hash": "h3"}, nil)
		if err := s1.Delete(ctx, vk, "vk_3", Unconditional); err != nil {
			t.Fatal(err)
		}
		if err := s1.Close(); err != nil {
			t.Fatal(err)
		}
		s2, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if rev, _ := s2.Revision(ctx); rev != 6 {
			t.Fatalf("Revision after reopen = %d, want 6", rev)
		}
		list, _ := s2.List(ctx, vk)
		if fmt.Sprint(list) != fmt.Sprint([]Doc{{vk, "vk_1", 1, []byte(`{"a":1}`)}, {vk, "vk_2", 4, []byte(`{"b":22}`)}}) {
			t.Fatalf("List after reopen = %v", list)
		}
		if id, _ := s2.Index(ctx, "vk_hash", "h1"); id != "vk_1" {
			t.Fatal("index lost across reopen")
		}
		if _, err := s2.Index(ctx, "vk_hash", "h3"); !errors.Is(err, ErrNotFound) {
			t.Fatal("deleted document's index entry came back")
		}
		if d, err := s2.Put(ctx, mp, "mp_1", []byte(`{}`), 3); err != nil || d.Revision != 7 {
			t.Fatalf("write after reopen = %+v, %v", d, err)
		}
	})
}
