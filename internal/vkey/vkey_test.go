package vkey

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

var testPepper = []byte("pepper-pepper-pepper-pepper-pepper")

func TestNewSecretWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		s, err := NewSecret()
		if err != nil {
			t.Fatalf("NewSecret: %v", err)
		}
		if !strings.HasPrefix(s, Prefix) {
			t.Errorf("secret %q lacks prefix %q", s, Prefix)
		}
		if got, want := len(s), len(Prefix)+randLen+sumLen; got != want {
			t.Errorf("len(secret) = %d, want %d", got, want)
		}
		for _, c := range s[len(Prefix):] {
			if !strings.ContainsRune(alphabet, c) {
				t.Errorf("secret %q has non-base62 character %q", s, c)
			}
		}
		if !WellFormed(s) {
			t.Errorf("WellFormed(%q) = false, want true", s)
		}
		if seen[s] {
			t.Errorf("NewSecret returned %q twice", s)
		}
		seen[s] = true
	}
}

func TestWellFormedCatchesEverySingleCharTypo(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(s) {
		for _, c := range []byte(alphabet + "-_") {
			if c == s[i] {
				continue
			}
			typo := s[:i] + string(c) + s[i+1:]
			if WellFormed(typo) {
				t.Errorf("WellFormed(%q) = true after changing position %d from %q to %q", typo, i, s[i], c)
			}
		}
	}
}

func TestWellFormedRejects(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"prefix only", Prefix},
		{"too short", s[:len(s)-1]},
		{"too long", s + "0"},
		{"wrong prefix", "sk-sloice-" + s[len(Prefix):]},
		{"openai style", "sk-proj-" + s[len(Prefix):]},
		{"non-alphabet body", s[:len(Prefix)] + "!" + s[len(Prefix)+1:]},
		{"swapped halves", Prefix + s[len(Prefix)+randLen:] + s[len(Prefix):len(Prefix)+randLen]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if WellFormed(tt.in) {
				t.Errorf("WellFormed(%q) = true, want false", tt.in)
			}
		})
	}
}

func TestHasher(t *testing.T) {
	if _, err := NewHasher([]byte("short")); err == nil {
		t.Errorf("NewHasher(short pepper): got nil error, want error")
	}
	h1, err := NewHasher(testPepper)
	if err != nil {
		t.Fatal(err)
	}
	h1again, _ := NewHasher(bytes.Clone(testPepper))
	other := bytes.Clone(testPepper)
	other[0] ^= 1
	h2, _ := NewHasher(other)

	const secret = "sk-sluice-example"
	if got, want := h1.Sum(secret), h1again.Sum(secret); got != want {
		t.Errorf("same pepper, same secret: %s != %s", got.Hex(), want.Hex())
	}
	if h1.Sum(secret) == h2.Sum(secret) {
		t.Errorf("different peppers gave the same digest")
	}
	if h1.Sum(secret) == h1.Sum(secret+"x") {
		t.Errorf("different secrets gave equal digests")
	}
	d := h1.Sum(secret)
	if got := len(d.Hex()); got != 64 {
		t.Errorf("len(Hex()) = %d, want 64", got)
	}
	back, err := ParseDigest(d.Hex())
	if err != nil {
		t.Fatalf("ParseDigest(Hex()): %v", err)
	}
	if back != d {
		t.Errorf("ParseDigest(Hex()) = %s, want %s", back.Hex(), d.Hex())
	}
	if up, err := ParseDigest(strings.ToUpper(d.Hex())); err != nil || up != d {
		t.Errorf("ParseDigest(upper case) = %s, %v; want %s, nil", up.Hex(), err, d.Hex())
	}
}

func TestParseDigestErrors(t *testing.T) {
	valid := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"odd length", valid[:63]},
		{"too short", valid[:62]},
		{"too long", valid + "ab"},
		{"non-hex", "zz" + valid[2:]},
		{"sha256: prefix", "sha256:" + valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseDigest(tt.in); err == nil {
				t.Errorf("ParseDigest(%q): got nil error, want error", tt.in)
			}
		})
	}
}

func TestDisplayPrefix(t *testing.T) {
	tests := []struct{ in, want string }{
		{"sk-sluice-ABCDEFGH", "sk-sluice-ABCD"},
		{"sk-sluice-ABCD", "sk-sluice-ABCD"},
		{"sk-sluice-AB", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := DisplayPrefix(tt.in); got != tt.want {
			t.Errorf("DisplayPrefix(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// idMillis decodes the 48-bit time of a vk_ ULID: its first 10 characters hold 50 bits, the
// top 2 of which are zero.
func idMillis(t *testing.T, id string) int64 {
	t.Helper()
	var v int64
	for _, c := range id[3:13] {
		i := strings.IndexRune(crockford, c)
		if i < 0 {
			t.Fatalf("id %q: %q is not Crockford base32", id, c)
		}
		v = v<<5 | int64(i)
	}
	return v
}

func TestNewIDFormat(t *testing.T) {
	before := time.Now().UnixMilli()
	seen := map[string]bool{}
	for range 200 {
		id := NewID()
		if !strings.HasPrefix(id, "vk_") || len(id) != 3+26 {
			t.Fatalf("NewID() = %q, want vk_ + 26 characters", id)
		}
		for _, c := range id[3:] {
			if !strings.ContainsRune(crockford, c) {
				t.Errorf("NewID() = %q: %q is not Crockford base32", id, c)
			}
		}
		if id[3] > '7' {
			t.Errorf("NewID() = %q: first character above 7 overflows 128 bits", id)
		}
		if seen[id] {
			t.Errorf("NewID() returned %q twice", id)
		}
		seen[id] = true
		if ms := idMillis(t, id); ms < before || ms > time.Now().UnixMilli() {
			t.Errorf("NewID() = %q encodes %d ms, want within [%d, now]", id, ms, before)
		}
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	var prev string
	for range 5 {
		id := NewID()
		if prev != "" && !(prev < id) {
			t.Errorf("NewID() = %q, not after %q from an earlier millisecond", id, prev)
		}
		prev = id
		// Wait for the clock to move to the next millisecond (no sleep granularity games).
		for ms := time.Now().UnixMilli(); time.Now().UnixMilli() == ms; {
		}
	}
}

func BenchmarkHasherSum(b *testing.B) {
	h, _ := NewHasher([]byte("pepper-0123456789-0123456789-0123456789"))
	secret, _ := NewSecret()
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Sum(secret)
	}
}
