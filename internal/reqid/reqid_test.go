package reqid

import (
	"encoding/hex"
	"strconv"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	before := time.Now().UnixMilli()
	seen := map[string]bool{}
	for range 1000 {
		id := New()
		if len(id) != 32 {
			t.Fatalf("New() = %q, want 32 hex digits", id)
		}
		if _, err := hex.DecodeString(id); err != nil {
			t.Fatalf("New() = %q is not hex: %v", id, err)
		}
		if seen[id] {
			t.Fatalf("New() returned %q twice", id)
		}
		seen[id] = true
		ms, err := strconv.ParseInt(id[:12], 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		if ms < before || ms > time.Now().UnixMilli() {
			t.Errorf("New() = %q encodes %d ms, want within [%d, now]", id, ms, before)
		}
	}
}

func TestNewSortsByTime(t *testing.T) {
	a := New()
	for ms := time.Now().UnixMilli(); time.Now().UnixMilli() == ms; {
	}
	b := New()
	if !(a < b) {
		t.Errorf("New() = %q, not after %q from an earlier millisecond", b, a)
	}
}
