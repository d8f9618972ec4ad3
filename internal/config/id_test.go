package config

import (
	"strings"
	"testing"
	"time"
)

const crockfordAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idMillis decodes the 48-bit time of a vk_ ULID: its first 10 characters hold 50 bits, the
// top 2 of which are zero.
func idMillis(t *testing.T, id string) int64 {
	t.Helper()
	var v int64
	for _, c := range id[3:13] {
		i := strings.IndexRune(crockfordAlphabet, c)
		if i < 0 {
			t.Fatalf("id %q: %q is not Crockford base32", id, c)
		}
		v = v<<5 | int64(i)
	}
	return v
}

func TestVirtualKeyIDFormat(t *testing.T) {
	before := time.Now().UnixMilli()
	seen := map[string]bool{}
	for range 200 {
		id := NewID(KindVirtualKey)
		if !strings.HasPrefix(id, "vk_") || len(id) != 3+26 {
			t.Fatalf("NewID(virtual_key) = %q, want vk_ + 26 characters", id)
		}
		for _, c := range id[3:] {
			if !strings.ContainsRune(crockfordAlphabet, c) {
				t.Errorf("NewID(virtual_key) = %q: %q is not Crockford base32", id, c)
			}
		}
		if id[3] > '7' {
			t.Errorf("NewID(virtual_key) = %q: first character above 7 overflows 128 bits", id)
		}
		if seen[id] {
			t.Errorf("NewID(virtual_key) returned %q twice", id)
		}
		seen[id] = true
		if ms := idMillis(t, id); ms < before || ms > time.Now().UnixMilli() {
			t.Errorf("NewID(virtual_key) = %q encodes %d ms, want within [%d, now]", id, ms, before)
		}
	}
}

func TestVirtualKeyIDSortsByTime(t *testing.T) {
	var prev string
	for range 5 {
		id := NewID(KindVirtualKey)
		if prev != "" && !(prev < id) {
			t.Errorf("NewID(virtual_key) = %q, not after %q from an earlier millisecond", id, prev)
		}
		prev = id
		// Wait for the clock to move to the next millisecond (no sleep granularity games).
		for ms := time.Now().UnixMilli(); time.Now().UnixMilli() == ms; {
		}
	}
}
